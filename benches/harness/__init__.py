"""The benchmark harness (not part of the installed package): inputs, timing, machine information and reports
for `benches/bench_processors.py` (`processors`), `benches/bench_generate.py` (`generate`, with its
CTranslate2 adapter `ctranslate2`) and `benches/bench_beam.py`. The `fastlogits bench` command imports it from
a source checkout."""
