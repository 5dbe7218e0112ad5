"""seqbench.losses"""
