# cython: language_level=3
# C-level functions of fastloss._core shared with the other kernel modules (cimported).

cdef int team_threads(int n) noexcept nogil
cdef void note_threads(int n) noexcept nogil
