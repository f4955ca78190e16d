"""The ImageNet-9 class list and image extensions, shared by the in9 reader and the
imagenet_shift reader (which in9 runs for its ``shift`` sets). Not a dataset type: the
leading underscore keeps it out of ``oacl.data.prepare.known_types``."""

IN9_CLASSES = [
    "dog",
    "bird",
    "wheeled vehicle",
    "reptile",
    "carnivore",
    "insect",
    "musical instrument",
    "primate",
    "fish",
]
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
