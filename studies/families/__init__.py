"""Built-in model families for the width studies: factories ``make(width, rank, seed)``
(``scaling.factory``) of real architectures, each pretrained briefly on a synthetic task so
that the LoRA fine-tune starts from a trained base.

- ``bert``: a BERT-style encoder classifier, LoRA on query and value (``studies.families.bert``);
- ``gpt2``: a GPT-2-style decoder, LoRA on c_attn, c_proj and c_fc (``studies.families.gpt2``).

``--factory bert`` names the family with its defaults; ``studies.families.bert:BertFamily``
holds the settings. ``lr-laws --factory bert`` runs the family's lr-laws settings instead
(``studies.families.bert:laws``; ``studies.lr_laws.factory.LAWS_FAMILIES``). Pretrained bases
are cached on disk (``studies.families.cache``), so a second run does not pretrain again.
"""
FAMILIES = {"bert": "studies.families.bert:make", "gpt2": "studies.families.gpt2:make"}
