"""oacl.cam: ContraCAM and classifier CAM soft masks (stage `oacl cam`).

``oacl.cam.contracam`` is the function (the module is ``oacl.cam.contracam`` in
sys.modules; import names from it with ``from oacl.cam.contracam import ...``).
"""

from .contracam import CamEngine, classifier_cam, contracam, contrastive_score

__all__ = ["CamEngine", "classifier_cam", "contracam", "contrastive_score"]
