"""seqbench.training"""
