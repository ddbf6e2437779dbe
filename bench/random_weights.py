"""Random weight tensors for the benchmark-model writers (make_models.py, make_moe_model.py), made on
all cores: each tensor has its own generator seeded by (seed, index), so the output does not depend
on the number of threads, and numpy's generators release the GIL while they fill arrays."""
import concurrent.futures
import os
from collections import deque

import numpy as np


def normal_f32(rng, shape, scale):
    """scale * N(0, 1) as float32, made in slices of at most 4096 rows (bounded float64-free temporaries)."""
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1, shape[-1])
    for i in range(0, flat.shape[0], 4096):
        n = min(4096, flat.shape[0] - i)
        rng.standard_normal((n, shape[-1]), dtype=np.float32, out=flat[i:i + n])
        flat[i:i + n] *= scale
    return out


def to_bf16_bits(x):
    """float32 -> bfloat16 bit patterns (uint16), rounded to nearest even (numpy has no bfloat16)."""
    b = x.view(np.uint32)
    return ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)


def in_order(makers, seed=0, lookahead=None):
    """Yields maker(rng) for each maker, in order, computing up to `lookahead` of them ahead on a pool."""
    workers = os.cpu_count() or 1
    lookahead = lookahead or 2 * workers
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending = deque()
        for i, make in enumerate(makers):
            pending.append(pool.submit(make, np.random.default_rng([seed, i])))
            if len(pending) > lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
