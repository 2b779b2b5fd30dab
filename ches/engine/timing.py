"""How long scoring takes, in words and in chunks: the `Estimate` a warm-up gives (`pipeline.estimate`
measures it), `duration` (the one way a time is written), and the chunk size that bounds the work a kill
can lose. Light on purpose: the CLI, the job log and the app import it without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ches.engine import chunks

CHUNK_SECONDS = 30.0          # work per chunk, at the measured rate: at most this much is lost to a kill


@dataclass(frozen=True)
class Estimate:
    pairs: int                       # pairs to score
    tokens: int                      # tokens they hold (prompt counted per side, as the manifest counts)
    exact: bool                      # False: scaled from a sample by characters
    tokens_per_second: float         # the engine alone, measured on a short warm-up
    seconds: float                   # tokens / tokens_per_second / ranks

    def __str__(self) -> str:
        """'1,234 pairs to score, about 456,789 tokens; estimated 3 min 05 s at 2,345 tokens/s'."""
        return (f"{self.pairs:,} pairs to score, {'' if self.exact else 'about '}{self.tokens:,} tokens; "
                f"estimated {duration(self.seconds)} at {self.tokens_per_second:,.0f} tokens/s")


def duration(seconds: float) -> str:
    """'42 s', '3 min 05 s', '2 h 07 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def chunk_size_for(total_pairs: int, est: Estimate | None = None, block: int = 1) -> int:
    """Pairs per chunk for a run of `total_pairs`: min(CHUNK_SECONDS x the measured pairs per second,
    max(16, total / 20), chunks.DEFAULT_CHUNK_PAIRS), rounded down to a multiple of `block`, at least
    `block` (chunks are whole blocks: forward.block_pairs). Without a measured rate (`est` None, or no
    token counted), the time bound is left out."""
    size = min(chunks.DEFAULT_CHUNK_PAIRS, max(16, -(-int(total_pairs) // 20)))
    if est is not None and est.tokens > 0 and est.tokens_per_second > 0:
        pairs_per_second = est.pairs * est.tokens_per_second / est.tokens
        size = min(size, int(CHUNK_SECONDS * pairs_per_second))
    return max(block, size // block * block)
