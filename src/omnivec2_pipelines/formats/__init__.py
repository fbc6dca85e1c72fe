"""On-disk formats that several modalities read, one module each; nothing here imports a modality.

* :mod:`.base`: :class:`~.base.DataError`, :class:`~.base.ErrorPolicy`, the split names;
* :mod:`.class_folders`: ``root/<split>/<class>/<file>`` trees;
* :mod:`.images`: decoding image files (8-bit colour/grayscale, high-depth grayscale) into table rows;
* :mod:`.ucr_ts`: UCR/UEA ``.ts`` files (univariate or multivariate, class labels or regression targets);
* :mod:`.sktime_data`: the ``.ts`` data sets bundled with the installed sktime;
* :mod:`.tables`: CSV/Parquet table files (one file or one per split).

The modality modules (:mod:`omnivec2_pipelines.modalities`) use these, the parameter checkers
(:mod:`omnivec2_pipelines.checks`) and their base, never each other.
"""
