#!/usr/bin/env python3
"""How much tile area each kernel tiling computes for the bench's random
layout (10% of 32-wide blocks, T=8192: 256 x 256 blocks), against the kept
blocks' area: a host simulation for bench/NOTES.md (random row, v32).

  current  64x64 natural kernel tiles (what the plan runs today)
  A        64-row query tiles, the union of both block rows' key blocks
           gathered two at a time into 64-wide key tiles (per-tile gather)
  B        32-row query tiles, each row's own key blocks gathered in pairs
  C        as A with four blocks to a 128-wide key tile
  D        128-row query tiles (the wgmma pairs), union gathered in pairs
"""

import random


def main(n_blocks=256, density=0.10, seed=1):
    rng = random.Random(seed)  # any seed: the ratios move by ~1%
    rows = [[j for j in range(n_blocks) if rng.random() < density] for _ in range(n_blocks)]
    kept = sum(len(r) for r in rows)  # in 32 x 32 block areas

    def union(first, count):
        return set().union(*(rows[first + k] for k in range(count)))

    natural = sum(len({j // 2 for j in union(2 * t, 2)}) for t in range(n_blocks // 2))
    a = sum((len(union(2 * t, 2)) + 1) // 2 for t in range(n_blocks // 2))
    b = sum((len(r) + 1) // 2 for r in rows)
    c = sum((len(union(2 * t, 2)) + 3) // 4 for t in range(n_blocks // 2))
    d = sum((len(union(4 * t, 4)) + 1) // 2 for t in range(n_blocks // 4))
    print(f"kept blocks {kept}")
    # computed area / kept area (a 64x64 tile is 4 blocks, 32x64 is 2, ...)
    print(f"current 64x64 natural tiles:        {natural * 4 / kept:.2f}x")
    print(f"A 64-row, union gathered in pairs:   {a * 4 / kept:.2f}x")
    print(f"B 32-row, own blocks in pairs:       {b * 2 / kept:.2f}x")
    print(f"C 64-row, union gathered by four:    {c * 8 / kept:.2f}x")
    print(f"D 128-row, union gathered in pairs:  {d * 8 / kept:.2f}x")


if __name__ == "__main__":
    main()
