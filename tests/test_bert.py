"""The BERT family: parity with transformers' native BERT, save/load and remote code, masked-LM data, fill-mask,
LoRA by hand == PEFT on the encoder, bad inputs, and the CLI from masked-LM pretraining to classification."""

import json

import pytest
import torch
from conftest import run_without_scratchformers
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification
from transformers import BertForMaskedLM as NativeMaskedLM
from transformers import BertForSequenceClassification as NativeSequenceClassification
from transformers import BertForTokenClassification as NativeTokenClassification
from transformers import BertModel as NativeModel

import scratchformers as sf
from scratchformers import conversion
from scratchformers.tokenization_scratch import train_tokenizer_from_iterator

SHAPES = {
    "3L-64w-4h": dict(num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128),
    "1L-48w-3h-ffn100": dict(num_hidden_layers=1, hidden_size=48, num_attention_heads=3, intermediate_size=100),
}
VOCAB = 300
IDS = torch.tensor([[2, 17, 33, 9, 71, 12, 40, 250, 3], [2, 5, 6, 7, 3, 0, 0, 0, 0], [2, 99, 98, 3, 44, 45, 3, 0, 0]])
MASK = (IDS != 0).long()
TYPES = torch.tensor([[0] * 9, [0] * 9, [0, 0, 0, 0, 1, 1, 1, 0, 0]])
TEXTS = ["the cat is playing with a red ball .", "a dog runs in the park and plays .", "小猫在公园里玩。房间很干净！",
         "the movie was good and the acting was great .", "服务很好，价格便宜，下次还来。"] * 40


def config(shape="3L-64w-4h", **overrides):
    return sf.BertConfig(**{**SHAPES[shape], "vocab_size": VOCAB, "max_position_embeddings": 32, **overrides})


def model_of(cls, shape="3L-64w-4h", seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(config(shape, **overrides)).eval()


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer_from_iterator(TEXTS, vocab_size=200, tokenizer_type="wordpiece", show_progress=False)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("shape", SHAPES)
def test_masked_lm_logits_match_native_bert_both_ways_with_padding_and_token_types(shape, attn):
    ours = model_of(sf.BertForMaskedLM, shape)
    native = conversion.bert_to_native(ours)
    assert type(native) is NativeMaskedLM
    for model in (ours, native):
        model.set_attn_implementation(attn)
    with torch.no_grad():
        expected = native(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES).logits
        assert torch.allclose(ours(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES).logits, expected, atol=1e-5)
        back = conversion.bert_from_native(native)
        back.set_attn_implementation(attn)
        assert torch.equal(back(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES).logits,
                           ours(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES).logits)


@pytest.mark.parametrize("ours_class, native_class", [
    (sf.BertModel, NativeModel),
    (sf.BertForSequenceClassification, NativeSequenceClassification),
    (sf.BertForTokenClassification, NativeTokenClassification),
])
def test_base_and_classification_heads_match_native(ours_class, native_class):
    ours = model_of(ours_class, num_labels=3)
    native = conversion.bert_to_native(ours, native_class)
    with torch.no_grad():
        a = ours(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES, output_hidden_states=True,
                 output_attentions=True)
        b = native(input_ids=IDS, attention_mask=MASK, token_type_ids=TYPES, output_hidden_states=True,
                   output_attentions=True)
    first = "last_hidden_state" if ours_class is sf.BertModel else "logits"
    assert torch.allclose(a[first], b[first], atol=1e-5)
    if ours_class is sf.BertModel:
        assert torch.allclose(a.pooler_output, b.pooler_output, atol=1e-5)
    assert len(a.hidden_states) == len(b.hidden_states) == ours.config.num_hidden_layers + 1
    assert all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a.hidden_states, b.hidden_states))
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a.attentions, b.attentions))
    if ours_class is sf.BertForSequenceClassification:
        labels = torch.tensor([0, 2, 1])
        assert torch.allclose(ours(input_ids=IDS, attention_mask=MASK, labels=labels).loss,
                              native(input_ids=IDS, attention_mask=MASK, labels=labels).loss, atol=1e-6)


def test_padding_does_not_change_the_real_tokens():
    model = model_of(sf.BertForMaskedLM)
    with torch.no_grad():
        alone = model(input_ids=IDS[1:2, :5]).logits
        padded = model(input_ids=IDS[1:2], attention_mask=MASK[1:2]).logits[:, :5]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_sparse_prediction_gives_the_same_loss_and_gradients():
    labels = torch.full_like(IDS, -100)
    labels[0, 3], labels[2, 1], labels[2, 5] = 9, 98, 45
    losses, grads = [], []
    for sparse in (False, True):
        model = model_of(sf.BertForMaskedLM, sparse_prediction=sparse)
        out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
        out.loss.backward()
        losses.append(out.loss)
        grads.append(model.bert.embeddings.word_embeddings.weight.grad)
        assert out.logits.shape == ((3, VOCAB) if sparse else (*IDS.shape, VOCAB))
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_mlm_decoder_is_tied_and_the_round_trip_keeps_logits(tmp_path):
    model = model_of(sf.BertForMaskedLM)
    assert model.mlm_head.decoder.weight is model.bert.embeddings.word_embeddings.weight
    model.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is sf.BertForMaskedLM and type(AutoConfig.from_pretrained(tmp_path)) is sf.BertConfig
    assert loaded.mlm_head.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=IDS, attention_mask=MASK).logits, model(input_ids=IDS, attention_mask=MASK).logits)
    assert type(AutoModel.from_pretrained(tmp_path)) is sf.BertModel
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path, num_labels=3)
    assert type(classifier) is sf.BertForSequenceClassification and classifier.classifier.out_features == 3
    auto_map = json.loads((tmp_path / "config.json").read_text())["auto_map"]
    assert set(auto_map) == {"AutoConfig", "AutoModel", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
                             "AutoModelForTokenClassification"}


REMOTE_SCRIPT = """
import torch
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, pipeline

folder, out = sys.argv[1], sys.argv[2]
model = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True).eval()
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=2)
fill = pipeline("fill-mask", model=folder, trust_remote_code=True, top_k=2)
with torch.no_grad():
    logits = model(input_ids=torch.tensor([[2, 17, 33, 9, 3]])).logits
torch.save({"logits": logits, "classifier": type(classifier).__name__, "fill": fill("the [MASK] is playing")}, out)
"""


def test_remote_code_and_fill_mask_pipeline_load_without_scratchformers(tmp_path, wordpiece):
    model = model_of(sf.BertForMaskedLM, vocab_size=len(wordpiece))
    folder = tmp_path / "checkpoint"
    model.save_pretrained(folder)
    wordpiece.save_pretrained(folder)
    completed = run_without_scratchformers(tmp_path, REMOTE_SCRIPT, folder, tmp_path / "out.pt")
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = torch.load(tmp_path / "out.pt")
    with torch.no_grad():  # the other process runs with its own thread count: the same sums in another order
        assert torch.allclose(result["logits"], model(input_ids=torch.tensor([[2, 17, 33, 9, 3]])).logits, atol=1e-6)
    assert result["classifier"] == "BertForSequenceClassification"
    assert len(result["fill"]) == 2 and all("[MASK]" not in guess["sequence"] for guess in result["fill"])


def test_fill_mask_pipeline_ranks_by_the_models_own_probabilities(tmp_path, wordpiece):
    from transformers import pipeline

    model = model_of(sf.BertForMaskedLM, vocab_size=len(wordpiece))
    fill = pipeline("fill-mask", model=model, tokenizer=wordpiece, top_k=3)
    guesses = fill("the cat is [MASK] with a red ball .")
    inputs = wordpiece("the cat is [MASK] with a red ball .", return_tensors="pt")
    position = int((inputs["input_ids"][0] == wordpiece.mask_token_id).nonzero())
    with torch.no_grad():
        probabilities = model(**inputs).logits[0, position].softmax(-1)
    top = probabilities.topk(3)
    assert [g["token"] for g in guesses] == top.indices.tolist()
    assert [g["score"] for g in guesses] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_wordpiece_tokenizer_gives_bert_inputs_and_reloads(tmp_path, wordpiece):
    from transformers import AutoTokenizer

    encoded = wordpiece("the cat plays", "小猫玩")
    tokens = wordpiece.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and "小" in tokens
    first_sep = tokens.index("[SEP]")
    assert encoded["token_type_ids"] == [0] * (first_sep + 1) + [1] * (len(tokens) - first_sep - 1)
    assert [wordpiece.pad_token_id, wordpiece.mask_token_id] == [0, 4]
    wordpiece.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("the cat [MASK]")["input_ids"] == wordpiece("the cat [MASK]")["input_ids"]


def test_mlm_collator_masks_only_real_tokens_and_whole_words(wordpiece):
    from scratchformers.training.arguments import PretrainDataArguments
    from scratchformers.training.mlm import mlm_collator

    rows = [wordpiece("the cat is playing with a red ball . a dog runs")["input_ids"], wordpiece("小猫玩")["input_ids"]]
    specials = {wordpiece.cls_token_id, wordpiece.sep_token_id, wordpiece.pad_token_id}
    for whole_words in (False, True):
        collate = mlm_collator(wordpiece, PretrainDataArguments(mlm_probability=0.5, whole_word_mask=whole_words), seed=3)
        masked_any = 0
        for _ in range(30):
            batch = collate([{"input_ids": list(row)} for row in rows])
            labels = batch["labels"]
            original = torch.full_like(labels, wordpiece.pad_token_id)
            for i, row in enumerate(rows):
                original[i, : len(row)] = torch.tensor(row)
            chosen = labels != -100
            masked_any += int(chosen.sum())
            assert not any(int(t) in specials for t in original[chosen])  # [CLS] [SEP] [PAD] are never chosen
            assert torch.equal(labels[chosen], original[chosen])
            if whole_words:
                tokens = [wordpiece.convert_ids_to_tokens(row.tolist()) for row in original]
                for i, row in enumerate(tokens):
                    for j, token in enumerate(row):
                        if token.startswith("##"):  # a piece is chosen exactly when the piece before it is
                            assert chosen[i, j] == chosen[i, j - 1]
        assert masked_any > 0


def test_pack_mlm_dataset_starts_every_block_with_cls(wordpiece):
    import datasets

    from scratchformers.training.data import pack_mlm_dataset

    blocks = pack_mlm_dataset(datasets.Dataset.from_dict({"text": TEXTS}), wordpiece, block_size=16)
    assert len(blocks) > 5
    for ids in blocks["input_ids"]:
        assert len(ids) == 16 and ids[0] == wordpiece.cls_token_id and ids[-1] == wordpiece.sep_token_id
    with pytest.raises(ValueError, match="needs a tokenizer with \\[CLS\\]"):
        from scratchformers.tokenization_scratch import train_tokenizer_from_iterator as train

        pack_mlm_dataset(datasets.Dataset.from_dict({"text": TEXTS}), train(TEXTS, 300, show_progress=False), 16)


def test_hand_rolled_lora_equals_peft_on_the_encoder_outputs_and_gradients():
    from scratchformers import lora
    from scratchformers.peft_utils import get_peft_lora_model

    labels = torch.tensor([0, 1, 1])
    models = {}
    for method in ("peft", "hand"):
        model = model_of(sf.BertForSequenceClassification, num_labels=2).train()
        torch.manual_seed(5)
        if method == "peft":
            model = get_peft_lora_model(model, r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights="gaussian")
        else:
            lora.add_lora(model, lora.LoraSettings(r=4, lora_alpha=8, task_type="SEQ_CLS", init_lora_weights="gaussian"))
        torch.manual_seed(11)  # the same dropout masks in both
        out = model(input_ids=IDS, attention_mask=MASK, labels=labels)
        out.loss.backward()
        models[method] = (model, out)
    (peft, peft_out), (hand, hand_out) = models["peft"], models["hand"]
    assert torch.allclose(peft_out.logits, hand_out.logits, atol=1e-6)
    peft_grads = {n.replace("base_model.model.", "").replace(".default", "").replace("modules_to_save.", ""): p.grad
                  for n, p in peft.named_parameters() if p.requires_grad}
    hand_grads = {n: p.grad for n, p in hand.named_parameters() if p.requires_grad}
    assert set(peft_grads) == set(hand_grads) and any(".query." in n for n in hand_grads)
    assert "classifier.weight" in hand_grads
    for name, grad in hand_grads.items():
        assert torch.allclose(peft_grads[name], grad, atol=1e-6), name


def test_bad_inputs_get_clear_errors():
    model = model_of(sf.BertForMaskedLM)
    with pytest.raises(ValueError, match="token_type_ids holds 2, outside 0..1"):
        model(input_ids=IDS, token_type_ids=TYPES * 2)
    with pytest.raises(ValueError, match="Input of 40 tokens is longer than the model's max_position_embeddings=32"):
        model(input_ids=torch.ones(1, 40, dtype=torch.long))
    with pytest.raises(ValueError, match="token id 300 is outside the model's vocabulary"):
        model(input_ids=torch.tensor([[2, 300, 3]]))
    with pytest.raises(ValueError, match="hidden_size=64 is not divisible by num_attention_heads=5"):
        config(num_attention_heads=5)
    with pytest.raises(ValueError, match="relative_key"):
        sf.BertConfig(position_embedding_type="relative_key")
    with pytest.raises(ValueError, match="unknown config key 'num_hiden_layers'"):
        sf.BertConfig(num_hiden_layers=2)
    with pytest.raises(ValueError, match="Unknown BERT preset 'bert-huge'"):
        sf.BertConfig.from_preset("bert-huge")
    native = conversion.bert_config_to_native(config())
    native.is_decoder = True
    with pytest.raises(ValueError, match="is_decoder=True is not supported"):
        conversion.native_config_to_bert(native)


def test_presets_and_parameter_counts():
    assert sf.config_from_preset("bert-mini").hidden_size == 256
    # BERT-base with its 30,522-token vocabulary: the 110M of the paper (the MLM head included)
    assert sf.count_parameters("bert-base") == sum(p.numel() for p in NativeMaskedLM(
        conversion.bert_config_to_native(sf.BertConfig.from_preset("bert-base"))).parameters())
    assert sf.family_of("scratch_bert").pretraining_model is sf.BertForMaskedLM
    with pytest.raises(ValueError, match="encoder family"):
        sf.family_of("scratch_bert").causal_lm


def test_native_folder_converts_to_ours_and_back_with_equal_logits(tmp_path):
    from hub_scripts.convert import convert_folder

    torch.manual_seed(0)
    native = NativeMaskedLM(conversion.bert_config_to_native(config())).eval()
    native.save_pretrained(tmp_path / "native")
    assert convert_folder(tmp_path / "native", tmp_path / "ours") == ("bert", "scratch_bert")
    ours = AutoModelForMaskedLM.from_pretrained(tmp_path / "ours").eval()
    assert type(ours) is sf.BertForMaskedLM
    assert convert_folder(tmp_path / "ours", tmp_path / "back") == ("scratch_bert", "bert")
    back = NativeMaskedLM.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        expected = native(input_ids=IDS, attention_mask=MASK).logits
        assert torch.allclose(ours(input_ids=IDS, attention_mask=MASK).logits, expected, atol=1e-5)
        assert torch.allclose(back(input_ids=IDS, attention_mask=MASK).logits, expected, atol=1e-5)


def test_cli_pretrains_with_masked_lm_then_classifies(tmp_path):
    from scratchformers.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS), encoding="utf-8")
    rows = ["text,label"] + [f"{t},{i % 2}" for i, t in enumerate(["good movie", "bad movie", "great fun", "awful mess"] * 8)]
    (tmp_path / "train.csv").write_text("\n".join(rows), encoding="utf-8")
    code = main(["pretrain", "--preset", "bert-tiny", "--train_files", str(corpus), "--output_dir",
                 str(tmp_path / "mlm"), "--max_steps", "30", "--block_size", "32", "--vocab_size", "300",
                 "--eval_steps", "15", "--report_to", "none", "--whole_word_mask", "--disable_tqdm", "true"])
    assert code == 0
    results = json.loads((tmp_path / "mlm" / "all_results.json").read_text())
    assert results["global_step"] == 30 and 0 <= results["eval_masked_accuracy"] <= 1
    assert (tmp_path / "mlm" / "samples.txt").read_text().count("answer:") >= 1
    config_json = json.loads((tmp_path / "mlm" / "config.json").read_text())
    assert config_json["model_type"] == "scratch_bert" and config_json["architectures"] == ["BertForMaskedLM"]
    code = main(["classify", "--model_name_or_path", str(tmp_path / "mlm"), "--train_file", str(tmp_path / "train.csv"),
                 "--validation_file", str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "cls"),
                 "--num_train_epochs", "1", "--report_to", "none", "--disable_tqdm", "true"])
    assert code == 0
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert type(classifier) is sf.BertForSequenceClassification
    assert json.loads((tmp_path / "cls" / "all_results.json").read_text())["eval_accuracy"] >= 0


def test_a_staged_bert_folder_has_a_fill_mask_card_and_loads(tmp_path, wordpiece):
    from huggingface_hub import ModelCard

    from hub_scripts import stage_model_folder

    model_of(sf.BertForMaskedLM, vocab_size=len(wordpiece)).save_pretrained(tmp_path / "mlm")
    wordpiece.save_pretrained(tmp_path / "mlm")
    stage_model_folder(tmp_path / "mlm", tmp_path / "staged", repo_id="alice/tiny-bert")
    card = ModelCard.load(tmp_path / "staged" / "README.md")
    assert card.data.pipeline_tag == "fill-mask" and "scratch_bert" in card.data.tags
    assert 'pipeline("fill-mask", model="alice/tiny-bert"' in card.text and "generate(" not in card.text
    assert "masked language model" in card.text and "掩码语言模型" in card.text
    assert {"modeling_bert.py", "configuration_bert.py", "tokenizer.json"} <= {p.name for p in (tmp_path / "staged").iterdir()}


def test_gradient_checkpointing_gives_the_same_gradients():
    labels = torch.tensor([1, 0, 1])
    grads = []
    for checkpointing in (False, True):
        model = model_of(sf.BertForSequenceClassification, num_labels=2, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0).train()
        if checkpointing:
            model.gradient_checkpointing_enable()
            assert all(layer.gradient_checkpointing for layer in model.bert.layers)
        model(input_ids=IDS, attention_mask=MASK, labels=labels).loss.backward()
        grads.append({name: p.grad for name, p in model.named_parameters()})
    assert all(torch.allclose(grads[0][name], grads[1][name], atol=1e-6) for name in grads[0])


@pytest.mark.parametrize("method", ["peft", "hand", "hand+embeddings"])
def test_cli_classify_with_lora_saves_a_folder_that_loads_with_the_trained_weights(tmp_path, wordpiece, method):
    from transformers import pipeline

    from scratchformers.cli import main

    method, _, embeddings = method.partition("+")

    model_of(sf.BertForMaskedLM, vocab_size=len(wordpiece)).save_pretrained(tmp_path / "base")
    wordpiece.save_pretrained(tmp_path / "base")
    rows = ["text,label"] + [f"{t},{i % 2}" for i, t in enumerate(["good movie", "bad movie", "great fun", "awful"] * 8)]
    (tmp_path / "train.csv").write_text("\n".join(rows), encoding="utf-8")
    out = tmp_path / method
    assert main(["classify", "--model_name_or_path", str(tmp_path / "base"), "--train_file", str(tmp_path / "train.csv"),
                 "--validation_file", str(tmp_path / "train.csv"), "--output_dir", str(out), "--lora", method,
                 "--lora_r", "4", "--max_steps", "4", "--report_to", "none", "--disable_tqdm", "true",
                 "--learning_rate", "1e-2"] + (["--lora_embeddings", "true"] if embeddings else [])) == 0
    adapter = out if method == "peft" else out / "adapter"
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4
    assert ("bert.embeddings.word_embeddings" in adapter_config["target_modules"]) == bool(embeddings)
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()  # PEFT: base + adapter; hand: merged
    logits = pipeline("text-classification", model=loaded, tokenizer=wordpiece, top_k=None)(["good movie"])[0]
    validation = json.loads((out / "all_results.json").read_text())
    inputs = wordpiece(["good movie"], return_tensors="pt")
    with torch.no_grad():
        probabilities = loaded(**inputs).logits.softmax(-1)[0]
    # the pipeline's scores are these probabilities (not rounded first: a rounding boundary made this fail once)
    assert sorted(g["score"] for g in logits) == pytest.approx(sorted(probabilities.tolist()), abs=1e-6)
    base = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=2).eval()
    with torch.no_grad():  # trained: not the base model with a fresh head
        assert not torch.allclose(base.bert(**inputs).pooler_output, loaded.bert(**inputs).pooler_output)
    assert "eval_accuracy" in validation
    base_table, table = base.bert.embeddings.word_embeddings.weight, loaded.bert.embeddings.word_embeddings.weight
    assert torch.equal(base_table, table) != bool(embeddings)  # the merged update is in the table only if adapted
    if embeddings:
        assert main(["classify", "--model_name_or_path", str(tmp_path / "base"), "--train_file",
                     str(tmp_path / "train.csv"), "--output_dir", str(tmp_path / "none"), "--lora_embeddings", "true",
                     "--max_steps", "1", "--report_to", "none"]) == 2  # --lora_embeddings without --lora


def test_mean_pooling_reads_the_real_tokens_only_and_has_no_native_twin():
    model = model_of(sf.BertForSequenceClassification, num_labels=2, classifier_pooling="mean")
    with torch.no_grad():
        alone = model(input_ids=IDS[1:2, :5]).logits
        padded = model(input_ids=IDS[1:2], attention_mask=MASK[1:2]).logits
        states = model.bert(input_ids=IDS[1:2, :5]).last_hidden_state
        expected = model.classifier(torch.tanh(model.bert.pooler.dense(states.mean(1))))
    assert torch.allclose(alone, padded, atol=1e-5) and torch.allclose(alone, expected, atol=1e-6)
    with pytest.raises(ValueError, match="classifier_pooling='mean' has no native BERT counterpart"):
        conversion.bert_to_native(model, NativeSequenceClassification)
    with pytest.raises(ValueError, match="classifier_pooling must be 'cls' or 'mean', got 'max'"):
        config(classifier_pooling="max")


def test_gguf_and_int8_quantize_refuse_an_encoder_with_a_pointer(tmp_path, wordpiece):
    from scratchformers.gguf_export import export_gguf
    from scratchformers.quantization import quantize_model

    model_of(sf.BertForMaskedLM, vocab_size=len(wordpiece)).save_pretrained(tmp_path / "bert")
    wordpiece.save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="GGUF export knows the families .*not 'scratch_bert'"):
        export_gguf(tmp_path / "bert", tmp_path / "model.gguf")
    with pytest.raises(ValueError, match="quantize is for the decoders .* export onnx"):
        quantize_model(tmp_path / "bert", tmp_path / "int8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bert"]
