# INSTRUCTOR ONLY -- hidden checks of exercises/11_sparse_attention.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check, trace_check
from attention_course.checks.chapters._part3 import half_of_scores_resident, quarter_of_scores
from attention_course.checks.chapters.ch11_sparse_attention import _bw_case, _mask_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "local_window_mask": [
        output_check("long sequence, wide causal window [H1101]", "masks",
                     lambda: [_mask_case(40, 7, True), _mask_case(33, 32, False)]),
    ],
    "blocked_window_attention": [
        output_check("window 5 on 37 positions, float32 [H1102]", "values",
                     lambda: [_bw_case(1911, f32, 5, sizes=dict(B=2, H=3, N=37, D=16, Dv=8))]),
        trace_check("N = 4096, window = 4: still no (N, N) tensor [H1103]", "efficiency",
                    lambda: [_bw_case(1912, f64, 4, sizes=dict(B=1, H=1, N=4096, D=4, Dv=4))],
                    max_bytes=quarter_of_scores, max_rss=half_of_scores_resident),
    ],
}
