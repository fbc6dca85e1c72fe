"""Thin Kedro nodes and declarative pipelines, one folder per family (Kedro's layout).

Each family (``data``, ``training``, ``evaluation``, ``sweep``, ``study``) has ``nodes.py`` (thin
wrappers that hand parameters and datasets to the pure-torch code) and ``pipeline.py``, whose
``create_pipelines(modalities)`` returns the family's registered pipelines by name.
:func:`omnivec2_pipelines.pipeline_registry.build_pipelines` puts the families together;
:mod:`~omnivec2_pipelines.pipelines.nested` runs them inside a node (the sweep and the study).
"""
