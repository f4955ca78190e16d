"""oacl.cam: ContraCAM and classifier CAM soft masks (stage `oacl cam`).

Light: importing the package imports no torch (``oacl.cam.params`` is read by the config
check). The engine is ``oacl.cam.engine`` (``CamEngine``, ``contracam``,
``classifier_cam``, ``contrastive_score``); import from there.
"""
