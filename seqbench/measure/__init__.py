"""Measuring instruments shared by training, memprof and reporting: the metric registry
(``metrics``), full-ranking evaluation (``ranking``) and the allocation tracker (``allocations``)."""
