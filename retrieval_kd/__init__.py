"""rkd: knowledge distillation for retrieval models."""
