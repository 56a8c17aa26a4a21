"""Run methods on inputs and score them: held-out evaluations, reports, figures and the demo.

Modules
-------
scoring
    The one path: run named methods on a case and score them with the task's comparison
    (``run_and_score``), and a prediction request with its comparison (``predict_and_compare``,
    the FA-Net widget's job).
simulated
    Models against each other and the baselines on simulated (or given) held-out subjects.
real
    Segmentation models on real, labelled MS scans, per subject and input mode.
qsm_suite
    The QSM out-of-distribution suite (phantom families training never draws).
lesion_table
    One row per MS lesion: size, position, probability, location class, susceptibility.
demo, demo_results, demo_figures
    ``napari-fanet demo``: every shipped model and the baselines on the sample cases.
sample_files
    Where the sample cases are (in the wheel, the checkout, or simulated once into a cache);
    standard library only, so napari and a bare install can find them.
"""
