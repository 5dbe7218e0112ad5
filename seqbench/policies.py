"""Defaults that depend on the grid rather than on one run (``compare`` and ``tune`` apply them
when the options do not say otherwise)."""

# A verdict from one seed only measures user sampling (issue: one seed of LastFM SASRec-cce moved
# NDCG@10 from 0.0226 to 0.0385), so real data sets get three seeds unless --seeds says otherwise.
REAL_DATA_SEEDS = (0, 1, 2)
# The bare command must finish in a few minutes on a laptop CPU; real data sets get the protocol's
# 150 epochs with early stopping unless --epochs says otherwise.
SYNTHETIC_EPOCHS = 5
