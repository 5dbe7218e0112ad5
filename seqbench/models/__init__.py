"""seqbench.models"""
