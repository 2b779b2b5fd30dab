"""CHES Studio: find preference pairs that cause likelihood displacement in DPO.

CHES (Razin et al., ICLR 2025, Def. 2-3) scores a pair (x, y+, y-) by how close the two
responses sit in the model's own hidden-embedding space:

    CHES    = <S+, S-> - ||S+||^2,              S = sum of last-layer hidden states over the response
    LN-CHES = <m+, m- - m+>,  m = S / |y|

Higher = more likely displacement; curation keeps the lowest scores.
"""

__version__ = "0.1.0"
