"""seqbench.data"""
