# INSTRUCTOR ONLY -- hidden checks of exercises/10_transformer.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch10_transformer import _bn_case, _enc_case

f32, f64 = torch.float32, torch.float64

HIDDEN_CHECKS = {
    "encoder_layer_forward": [
        output_check("four heads, a longer padded batch, post-norm [H10a]", "masks",
                     lambda: [_enc_case(1001, f64, sizes=dict(B=3, N=9, H=4, D=3, F=20),
                                        mask="padding")]),
        output_check("pre-norm with a causal mask, float32 [H10b]", "masks",
                     lambda: [_enc_case(1002, f32, sizes=dict(B=2, N=7, H=3, D=4, F=16),
                                        mask="causal", norm_first=True)]),
    ],
    "masked_batch_norm": [
        output_check("a larger padded batch, float32 [H10c]", "masks",
                     lambda: [_bn_case(1003, f32, sizes=dict(B=8, N=12, d=16))]),
    ],
}
