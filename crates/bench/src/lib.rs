//! Benchmarks and workload generators for partnerdb.
