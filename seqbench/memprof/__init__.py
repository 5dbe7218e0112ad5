"""seqbench.memprof"""
