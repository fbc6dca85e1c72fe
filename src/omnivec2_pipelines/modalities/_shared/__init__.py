"""Preprocessing that several modalities share, as functions (no modality here, none registered).

* :mod:`.images`: the ``patch2d`` tokenization of a canonical image table (image, x-ray, thermal frames), its
  fitted form for new rows (``preprocess``) and per-channel normalisation (also video, depth, hyperspectral);
* :mod:`.inputs`: raw unlabelled inputs of ``read_inputs`` (files, folders, lists, in-memory objects) as items;
* :mod:`.series`: the canonical table of a UCR/UEA ``.ts`` pair, linear resampling of series rows
  (time series, IMU, infrared spectra) and raw series inputs of ``read_inputs`` (``.ts`` files, arrays).
"""
