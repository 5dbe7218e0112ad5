"""seqbench.data"""

# How training samples are cut from a user's sequence (``--set augment=``): the last window only,
# every prefix, or sliding windows. Here, not in batches.py, so the run config checks it without torch.
AUGMENTATIONS = ("none", "prefixes", "windows")
