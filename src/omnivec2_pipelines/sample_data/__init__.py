"""Embedded default data sets, one module per modality: deterministic generators and exporters of
real data that ships inside installed packages.

Each module has ``make_sample_data(root, params) -> manifest``, which writes the data set under
``root`` in the modality's standard layout (atomically) and returns a small JSON-able manifest. A
modality's :meth:`~omnivec2_pipelines.modalities.base.Modality.make_sample_data` imports its module
when called, so reading and tokenizing never import a generator or its dependencies.
"""
