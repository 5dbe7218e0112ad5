"""seqbench.reporting"""
