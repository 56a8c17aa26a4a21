"""MR physics below the models: the dipole model, data consistency, the phase-to-field chain.

Modules
-------
dipole
    Dipole and gradient kernels (unshifted FFT layout), the padded FFT grid, ``fft_apply``.
forward
    The forward model ``chi -> field`` (ppm of B0) and ppm <-> Hz.
tensor_checks
    Input checks and numpy <-> torch conversions shared by the dipole code.
data_consistency
    Reconcile a network's susceptibility map with the measured local field (ppm).

Phase to local field (issue 15), one module per step, run in order by
:func:`napari_fanet.physics.phase_chain.run_phase_chain` (progress callback, stop flag,
per-step timings). Arrays are numpy, spatial axes ``(X, Y, Z)`` in array order, echoes last.

=================  ==========================================  ==================================
module             step                                        in -> out (units)
=================  ==========================================  ==================================
gre_io             load 4D or per-echo NIfTI, echo times from  files -> stored phase
                   ``te_ms`` or BIDS sidecars (``EchoTime``)   ``(X, Y, Z, E)``, TE in s
phase_scale        detect radians / 12-bit integers / other    stored values -> radians, and a
                   scaled ranges (``scale`` override)          sentence saying what was assumed
brain_mask         Otsu on the echo-combined magnitude,        magnitude -> bool mask; later
                   morphology, largest component, holes        refined by the field noise
unwrap             Laplacian (FFT, padded grid) or quality-    wrapped rad -> unwrapped rad
                   guided (scikit-image) 3D unwrapping         (Laplacian: up to a harmonic)
echo_unwrap        unwrap the echo *differences* (phi0         ``(X, Y, Z, E)`` rad ->
                   cancels), one 2 pi shift per echo           ``(X, Y, Z, E-1)`` rad, dTE in s
field_fit          weighted least squares over echoes          rad -> field in Hz and ppm of B0
                   (weights from magnitude^2)                  (ppm = Hz / (42.577 MHz/T * B0));
                                                               sigma (Hz), fit residual (rad)
background         V-SHARP (multi-radius SMV, truncated        total ppm -> local ppm (V-SHARP:
                   deconvolution) or PDF (CG on the padded     on an eroded mask); reuses
                   dipole model)                               ``dipole.dipole_kernel``
lbv                Laplacian boundary value: Laplace equation  total ppm -> local ppm (on the
                   in the mask, CG on the 7-point stencil      mask eroded by one voxel)
phase_chain        all of the above                            stored phase -> local field ppm
=================  ==========================================  ==================================

The local field in ppm of B0 is what the classical inversions
(:mod:`napari_fanet.baselines.dipole_inversion`: TKD, CFL2) and the QSM networks take. The
matching simulator (head, air cavities, wrapped multi-echo phase) is
:mod:`napari_fanet.simulation.gre_phase`.
"""
