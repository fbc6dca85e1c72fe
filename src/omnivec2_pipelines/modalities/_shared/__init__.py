"""Preprocessing that several modalities share, as functions (no modality here, none registered).

* :mod:`.images`: the ``patch2d`` tokenization of a canonical image table (image, x-ray, thermal frames);
* :mod:`.series`: the canonical table of a UCR/UEA ``.ts`` pair and linear resampling of series rows
  (time series, IMU, infrared spectra).
"""
