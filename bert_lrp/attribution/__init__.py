"""How relevance flows (rules, composites, the operations the model is built from) and the attribution methods (registry, explain, LAT/rollout, IG, the original BERT-LRP calls)."""
