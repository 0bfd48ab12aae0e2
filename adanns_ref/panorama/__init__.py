"""Panorama: exact k-NN with level-by-level Cauchy-Schwarz pruning over dimension blocks, as in
faiss 1.15.1 (`IndexFlatL2Panorama`, `IndexIVFFlatPanorama`, `IndexRefinePanorama`), with an
extension whose levels follow the Matryoshka nesting sizes."""
from .flat import PanoramaFlatIndex
from .ivf import PanoramaIVFIndex
from .refine import PanoramaRefineIndex
from .levels import PanoramaStats, energy_share

__all__ = ["PanoramaFlatIndex", "PanoramaIVFIndex", "PanoramaRefineIndex", "PanoramaStats",
           "energy_share"]
