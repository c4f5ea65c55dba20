"""ml-100k's population statistics, which the simulated world samples from (counts per category)."""

import numpy as np

# ml-100k's star shares (1..5): the cut points are calibrated to reproduce them.
TARGET_STAR_SHARES = np.array([0.061, 0.114, 0.271, 0.342, 0.212])

# Statistics of ml-100k's populations (counts per category), used as sampling weights.
OCCUPATION_WEIGHTS = {
    "administrator": 79, "artist": 28, "doctor": 7, "educator": 95, "engineer": 67,
    "entertainment": 18, "executive": 32, "healthcare": 16, "homemaker": 7, "lawyer": 12,
    "librarian": 51, "marketing": 26, "none": 9, "other": 105, "programmer": 66,
    "retired": 14, "salesman": 12, "scientist": 31, "student": 196, "technician": 27,
    "writer": 45,
}
GENRE_WEIGHTS = np.array([2, 251, 135, 42, 122, 505, 109, 50, 725, 22, 24, 92, 56, 61, 247, 101, 251, 71, 27], dtype=float)
ZIP_REGION_WEIGHTS = np.array([8, 9, 12, 9, 10, 14, 9, 8, 9, 12], dtype=float)
