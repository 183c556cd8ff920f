"""The pipeline stages, one module per notebook: each reads its inputs from a run folder, calls
the models and metrics, and writes its outputs (atomic, schema-checked) back into the run folder.
"""
