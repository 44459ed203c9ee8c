"""Generation in the RGBA latent space (method.md §4): the latent diffusion sampler, its training, its
evaluation (FD/KID on ImageNet VGG16 features), and the LoRA recipe for diffusers pipelines."""
