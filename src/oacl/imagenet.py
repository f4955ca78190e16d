"""The ImageNet channel statistics every model is trained and read with (images in
[0, 1] are normalised with them: oacl.geometry.normalise). A module of its own, with no
imports, so that the stages' light parameter modules (oacl.train.params) can name them
without importing OpenCV through oacl.geometry, which re-exports them.
"""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
