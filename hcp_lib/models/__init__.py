"""Every recommender of the project, each following :class:`hcp_lib.models.base.Recommender`.

Models learn from a :class:`hcp_lib.split.TrainingData` and return scores or probabilities;
none reads or writes a run folder (the stages in :mod:`hcp_lib.stages` do).
"""
