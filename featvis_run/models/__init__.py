"""Model libraries behind one seam: an adapter per OpenMMLab library, and the feature source built on it."""
