#!/usr/bin/env python3
"""vec_faiss.py -- the FAISS side of `strata bench vec` (bench/vec.c runs it).

Loads the base vectors and queries the C bench wrote (.npy, float32), then
with FAISS (Debian's python3-faiss) on the same threads:
  - builds IndexHNSWFlat(dim, M) with the given efConstruction, --reps times
    (wall and process CPU seconds of each index.add),
  - searches the queries with efSearch, --search-reps times after a warm-up
    (queries per second of each),
  - does the same searches with IndexFlatL2 (exact, BLAS),
writes the HNSW and flat result ids to OUT_hnsw.npy / OUT_flat.npy (int64)
so the C side computes recall against its own ground truth, and prints one
JSON line with the timings. Exit 3 when numpy or faiss cannot be imported.
"""
import argparse
import json
import sys
import time

try:
    import numpy as np
    import faiss
except ImportError:
    sys.exit(3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--out", required=True, help="prefix of the id files")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--ef", type=int, default=64)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--search-reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    x = np.ascontiguousarray(np.load(a.base), dtype=np.float32)
    q = np.ascontiguousarray(np.load(a.queries), dtype=np.float32)
    d = x.shape[1]

    build_s, build_cpu_s = [], []
    index = None
    for _ in range(a.reps):
        index = None
        ix = faiss.IndexHNSWFlat(d, a.m)
        ix.hnsw.efConstruction = a.ef_construction
        t0, c0 = time.perf_counter(), time.process_time()
        ix.add(x)
        build_s.append(time.perf_counter() - t0)
        build_cpu_s.append(time.process_time() - c0)
        index = ix
    index.hnsw.efSearch = a.ef

    def timed(ix):
        _, ids = ix.search(q, a.k)  # warm-up
        qps = []
        for _ in range(a.search_reps):
            t0 = time.perf_counter()
            _, ids = ix.search(q, a.k)
            qps.append(len(q) / (time.perf_counter() - t0))
        return qps, ids

    hnsw_qps, hnsw_ids = timed(index)
    flat = faiss.IndexFlatL2(d)
    flat.add(x)
    flat_qps, flat_ids = timed(flat)
    np.save(a.out + "_hnsw.npy", hnsw_ids.astype(np.int64))
    np.save(a.out + "_flat.npy", flat_ids.astype(np.int64))
    print(json.dumps({"faiss_version": faiss.__version__, "threads": a.threads,
                      "build_s": build_s, "build_cpu_s": build_cpu_s, "hnsw_qps": hnsw_qps, "flat_qps": flat_qps}))


if __name__ == "__main__":
    main()
