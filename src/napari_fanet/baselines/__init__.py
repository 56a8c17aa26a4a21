"""The classical methods the networks are compared with (``shared/EVALUATION.md``).

Modules
-------
dipole_inversion
    QSM: thresholded k-space division (TKD) and closed-form L2 (CFL2), and the tuning of their
    parameter on validation subjects.
lesion_threshold
    MS lesions: a robust z-score threshold of the bias-corrected FLAIR inside white matter.
"""
