#!/usr/bin/env bash
# Reproduce Table 2 of the cumulative cross-entropy paper (Li et al.): five data sets x
# GRU4Rec/SASRec/S3-Rec x bce/ce/cce x five seeds, paper settings (leave-one-out, max_len 50,
# d 64, Adam 1e-3, batch 256, up to 150 epochs, patience 10, full ranking).
#
#   benchmarks/reproduce_cce_table2.sh gpu   # the full grid, for a GPU machine (hours)
#   benchmarks/reproduce_cce_table2.sh cpu   # a CPU-sized variant on LastFM (about an hour on 2 cores)
#
# Completed runs are reused: re-running resumes the grid. Data comes from SEQBENCH_MIRROR when
# set, else from the source URLs.
set -euo pipefail
variant=${1:-cpu}
results=${SEQBENCH_RESULTS:-results}
plots=${PLOTS:-plots/cce_table2_$variant}

case "$variant" in
  gpu)
    datasets=beauty,sports,toys,yelp,lastfm
    seqbench prepare beauty sports toys yelp lastfm
    seqbench compare --datasets "$datasets" --models gru4rec,sasrec,s3rec --losses bce,ce,cce \
      --seeds 0,1,2,3,4 --epochs 150 --set patience=10 --set pretrain_epochs=100 \
      --device cuda --results "$results" --table all --plots "$plots" --format markdown
    ;;
  cpu)
    seqbench prepare lastfm
    seqbench compare --datasets lastfm --models gru4rec,sasrec --losses bce,ce,cce \
      --seeds 0 --epochs 100 --set patience=10 \
      --device cpu --results "$results" --table all --plots "$plots" --format markdown
    ;;
  *)
    echo "usage: $0 gpu|cpu" >&2
    exit 2
    ;;
esac
