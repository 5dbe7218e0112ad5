"""seqbench.storage"""
