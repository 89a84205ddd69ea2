"""`python -m core …`: the command-line face of the product.

User mistakes and environment failures (disk full, read-only or damaged files) exit 2 with one line on stderr,
Ctrl-C exits 130 with one line; both leave the workspace as it was. Only bugs produce tracebacks.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, Optional

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # typer vendors its own click

from core import rules
from core.devices import DEVICE_HELP, PRECISION_HELP
from core.engines import ENGINES
from core.datasets import FORMATS as DATASET_FORMATS
from core.errors import UserError, environment_error
from core.export import FORMATS
from core.rules import RuleSpec

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Negative Space: mine, review and clean hard negatives for dense retrievers.")
labels_app = typer.Typer(no_args_is_help=True, help="Import and export verdicts (TSV; in from Label Studio and "
                                                    "Argilla too).")
app.add_typer(labels_app, name="labels")

WorkspaceOpt = typer.Option(None, "--workspace", "-w", help="Workspace folder (default $NEGSPACE_WORKSPACE or "
                                                            "data/workspace).")
DeviceOpt = typer.Option("auto", "--device", help=DEVICE_HELP)


class _RuleOptions:
    """Default of a command's ``spec`` parameter: it stands for every registered rule's options."""


RuleOpts = _RuleOptions()


def _rule_options() -> list[inspect.Parameter]:
    """``--rule`` and an option per registered rule parameter (``--num-negatives``, ``--relative-margin`` …)."""
    options = [inspect.Parameter("rule", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                                 default=typer.Option(rules.DEFAULT_SELECTOR, "--rule",
                                                      help="|".join(rules.REGISTRY)))]
    for param in rules.parameters():
        options.append(inspect.Parameter(param.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                         annotation=param.type if param.default is not None else Optional[param.type],
                                         default=typer.Option(param.default, param.flag, help=rules.param_help(param))))
    return options


class _WithRuleOptions:
    """A command whose ``spec: RuleSpec = RuleOpts`` parameter is offered as the rule options and handed to it as
    one RuleSpec. Typer reads ``__signature__`` each time it builds the CLI, so a rule registered after this
    module was imported still gets its options."""

    def __init__(self, func: Callable[..., None]) -> None:
        self.func = func
        self.__name__, self.__doc__, self.__annotations__ = func.__name__, func.__doc__, {}

    @property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self.func, eval_str=True)
        params = [option for p in signature.parameters.values()
                  for option in (_rule_options() if p.default is RuleOpts else [p])]
        return signature.replace(parameters=params)

    def __call__(self, **kwargs: object) -> None:
        names = {"rule", *(p.name for p in rules.parameters())}
        options = {name: kwargs.pop(name) for name in names}
        self.func(spec=RuleSpec.from_dict(options), **kwargs)


def _store(workspace: Optional[Path], create: bool = False):
    """An existing workspace and its store: commands other than ingest need data that is already there, and a
    typo in --workspace must not leave a new folder behind."""
    from core.workspace import open_workspace

    ws = open_workspace(workspace, create=create)
    return ws, ws.store()


def _echo_json(obj) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, sort_keys=True))


@app.command()
def ingest(path: Path = typer.Argument(..., help="BEIR folder, pairs/triplets file (.jsonl/.csv/.parquet) or "
                                                 "Hugging Face datasets folder (save_to_disk or Parquet shards)."),
           workspace: Optional[Path] = WorkspaceOpt,
           name: str = typer.Option(..., "--name", help="Dataset name in the workspace."),
           format: str = typer.Option("auto", "--format", help="|".join(DATASET_FORMATS)),
           replace: bool = typer.Option(False, "--replace", help="Overwrite a dataset of the same name whose "
                                                                 "content differs (labels are kept).")) -> None:
    """Validate and import a dataset; identical re-imports change nothing."""
    from core.datasets import ingest as do_ingest
    from core.workspace import creating_workspace

    with creating_workspace(workspace) as ws:  # removed again if the input is rejected
        store = ws.store()
        try:
            result = do_ingest(store, path, name, format, replace)
        finally:
            store.close()
    typer.echo(result.summary())


@app.command()
@_WithRuleOptions
def mine(workspace: Optional[Path] = WorkspaceOpt,
         dataset: str = typer.Option(..., "--dataset"),
         split: str = typer.Option("train", "--split"),
         model: Optional[str] = typer.Option(None, "--model", help="Local sentence-transformers folder "
                                                                     "(default: bundled all-MiniLM-L6-v2)."),
         depth: int = typer.Option(100, "--depth", help="Candidates kept per query (after removing positives)."),
         spec: RuleSpec = RuleOpts,
         bm25_depth: int = typer.Option(0, "--bm25-depth", help="Also add BM25's top N as candidates (hybrid)."),
         precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
         device: str = DeviceOpt,
         engine: str = typer.Option("local", "--engine", help="; ".join(f"{name}: {what}"
                                                                       for name, what in ENGINES.items())),
         query_prompt: Optional[str] = typer.Option(None, "--query-prompt"),
         document_prompt: Optional[str] = typer.Option(None, "--document-prompt"),
         as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Mine candidates with FAISS and apply a rule; prints the new run id."""
    from core.mining import describe_index, mine as do_mine

    ws, store = _store(workspace)
    result = do_mine(store, ws, dataset, split, model, depth, spec, bm25_depth, precision, query_prompt,
                     document_prompt, device=device, engine=engine)
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(result.run_id)
    typer.echo(f"{result.queries} queries, {result.candidates} candidates, {result.kept} kept "
               f"({spec.describe()}), {result.short_queries} queries short of {spec.num_negatives}; "
               f"encoded {result.encoded} texts ({result.cached} from cache) in {result.seconds:.1f}s "
               f"({describe_index(result.index)}); false-negative risk is scored when the run is first opened in "
               f"the app, or by `python -m core risk`", err=True)


@app.command()
@_WithRuleOptions
def rerule(run: str = typer.Option(..., "--run", help="The run whose stored candidates get the new rule."),
           workspace: Optional[Path] = WorkspaceOpt,
           spec: RuleSpec = RuleOpts,
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Apply another rule to a run's stored candidates (no encoding, no search); prints the new run id."""
    from core.mining import derive_run

    _, store = _store(workspace)
    result = derive_run(store, run, spec)
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(result.run_id)
    typer.echo(f"{result.kept} kept of {result.candidates} ({spec.describe()}), {result.short_queries} queries short "
               f"of {spec.num_negatives}; derived from {run} in {result.seconds:.2f}s", err=True)


@app.command()
def runs(workspace: Optional[Path] = WorkspaceOpt, dataset: Optional[str] = typer.Option(None, "--dataset"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """List mining runs, newest first."""
    from core.mining import run_spec

    _, store = _store(workspace)
    rows = store.runs(dataset)
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        s = r["stats"]
        typer.echo(f"{r['run_id']}\t{r['dataset']}/{r['split']}\t{run_spec(r).describe()}"
                   f"\t{s['queries']} q\t{s['kept']}/{s['candidates']} kept\t{r['created_at']}")


@app.command()
def diff(run_a: str, run_b: str, workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Negatives that appear, disappear or change rank from RUN_A to RUN_B."""
    from core.mining import diff_runs

    _, store = _store(workspace)
    frame = diff_runs(store, run_a, run_b)
    counts = frame["change"].value_counts().to_dict()
    typer.echo(" ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    changed = frame[frame["change"] != "same"]
    typer.echo(changed.to_csv(sep="\t", index=False), nl=False)


def _verdict_format_help() -> str:
    from core.verdict_import import VERDICT_FORMATS

    return "; ".join(f"{f.name}: {f.description}" for f in VERDICT_FORMATS.values())


@labels_app.command("import")
def labels_import(file: Path, workspace: Optional[Path] = WorkspaceOpt,
                  dataset: str = typer.Option(..., "--dataset"),
                  annotator: Optional[str] = typer.Option(None, "--annotator",
                                                          help="Annotator for rows (TSV) or annotations (Label "
                                                               "Studio) that name none."),
                  source: str = typer.Option("tsv", "--from", help=_verdict_format_help())) -> None:
    """Append verdicts from a labels TSV or an annotation tool's export (every row checked first)."""
    from core.verdict_import import import_verdicts

    _, store = _store(workspace)
    typer.echo(import_verdicts(store, dataset, file, source, annotator).summary())


@labels_app.command("export")
def labels_export(workspace: Optional[Path] = WorkspaceOpt, dataset: str = typer.Option(..., "--dataset"),
                  out: Path = typer.Option(..., "--out"),
                  history: bool = typer.Option(False, "--history", help="Every event, undos included.")) -> None:
    """Write current verdicts (or the full history) as TSV."""
    from core.labels import export_tsv

    _, store = _store(workspace)
    count = export_tsv(store, dataset, out, history)
    typer.echo(f"wrote {count} rows to {out}")


@app.command()
def export(workspace: Optional[Path] = WorkspaceOpt, run: str = typer.Option(..., "--run"),
           format: str = typer.Option(..., "--format",
                                      help=", ".join(FORMATS)),
           out: Path = typer.Option(..., "--out", help="Folder to write, replaced atomically when it is empty or "
                                                       "holds an earlier export."),
           data: Optional[str] = typer.Option(None, "--data", help="raw|curated (default: curated once verdicts "
                                                                   "or promotions exist)."),
           unsure: str = typer.Option("drop", "--unsure", help="curated: drop|keep negatives judged unsure."),
           force: bool = typer.Option(False, "--force", help="Replace a non-empty folder that holds no export "
                                                             "(never the workspace or a folder holding it)."),
           llm_verdicts: str = typer.Option("ignore", "--llm-verdicts", help="curated: ignore|count the verdicts of "
                                                                             "LLM judges (annotators llm:…)."),
           as_datasets: bool = typer.Option(False, "--as-datasets", help="Write the rows as a Hugging Face datasets "
                                                                         "folder (OUT/datasets, for load_from_disk) "
                                                                         "instead of data.jsonl.")) -> None:
    """Export a run's training data with a manifest."""
    from core.export import curation_warning
    from core.export import export as do_export

    _, store = _store(workspace, create=False)
    manifest = do_export(store, run, format, out, data, unsure, force, llm_verdicts, as_datasets)
    if warning := curation_warning(store, run, manifest["data"], llm_verdicts):
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {manifest['rows']} rows ({manifest['data']}) to {out}")


@app.command()
def backup(workspace: Optional[Path] = WorkspaceOpt, out: Path = typer.Option(..., "--out")) -> None:
    """Copy the whole store with SQLite's online backup (safe while the app is writing)."""
    from core.backup import backup as do_backup

    ws, _ = _store(workspace)
    do_backup(ws, out)
    typer.echo(f"backed up {ws.db_path} to {out}")


@app.command()
def restore(file: Path, workspace: Optional[Path] = WorkspaceOpt,
            force: bool = typer.Option(False, "--force", help="Overwrite a workspace that has content.")) -> None:
    """Restore a backup into a workspace (refuses a non-empty one unless --force)."""
    from core.backup import restore as do_restore

    restored = do_restore(file, workspace, force)
    typer.echo(f"restored {file} into {restored.root}")
    if restored.damaged is not None:
        typer.echo(f"the workspace's unreadable store was kept as {restored.damaged}", err=True)


@app.command()
def risk(workspace: Optional[Path] = WorkspaceOpt, run: str = typer.Option(..., "--run"),
         out: Path = typer.Option(..., "--out", help="TSV file to write."), device: str = DeviceOpt,
         second_model: Optional[str] = typer.Option(
             None, "--second-model", help="Local sentence-transformers folder whose scores feed the second_model "
                                          "signal from now on (stored in the workspace's settings; 'none' turns "
                                          "it off).")) -> None:
    """Re-score a run's candidates by false-negative risk and write them all, riskiest first, as TSV."""
    from core.risk import compute_risk, configure_second_model, write_tsv

    ws, store = _store(workspace)
    if second_model is not None:
        configure_second_model(ws, None if second_model.lower() == "none" else second_model)
    compute_risk(store, ws, run, device)
    count = write_tsv(store, run, out)
    typer.echo(f"wrote {count} candidates to {out}")


@app.command()
def train(workspace: Optional[Path] = WorkspaceOpt, run: str = typer.Option(..., "--run"),
          out: Path = typer.Option(..., "--out", help="Folder for the trained model (must not exist or be empty)."),
          data: str = typer.Option("raw", "--data", help="raw|curated"),
          loss: str = typer.Option("mnrl", "--loss", help="mnrl|cmnrl|gist"),
          rows: str = typer.Option("triplet", "--rows", help="triplet (a row per negative) | ntuple (a row per "
                                                             "positive with all the query's negatives)."),
          epochs: float = typer.Option(1.0, "--epochs"),
          batch_size: int = typer.Option(32, "--batch-size"),
          max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
          seed: int = typer.Option(0, "--seed"),
          learning_rate: float = typer.Option(2e-5, "--learning-rate"),
          max_seq_length: Optional[int] = typer.Option(None, "--max-seq-length",
                                                       help="Tokens per text while training (default: the "
                                                            "model's); the saved model keeps the base length."),
          precision: str = typer.Option("fp32", "--precision", help="Mixed precision while training: "
                                                                      + PRECISION_HELP),
          device: str = DeviceOpt,
          unsure: str = typer.Option("drop", "--unsure", help="curated: drop|keep negatives judged unsure."),
          eval_split: str = typer.Option("test", "--eval-split", help="Split checked for leakage."),
          exclude_leaks: bool = typer.Option(False, "--exclude-leaks", help="Drop training queries and documents "
                                                                            "that occur in the eval split."),
          base_model: Optional[str] = typer.Option(None, "--base-model", help="Model to fine-tune (default: "
                                                                              "bundled all-MiniLM-L6-v2).")) -> None:
    """Fine-tune a retriever on a run's raw or curated negatives; saves the model with a training manifest."""
    from core.train import TrainOptions
    from core.train import train as do_train

    options = TrainOptions(data=data, loss=loss, row_layout=rows, epochs=epochs, batch_size=batch_size,
                           max_steps=max_steps, seed=seed, learning_rate=learning_rate,
                           max_seq_length=max_seq_length,
                           precision=precision, device=device, unsure=unsure, eval_split=eval_split,
                           exclude_leaks=exclude_leaks, base_model=base_model)

    def warn(report) -> None:
        if report.any:
            hint = "" if report.excluded else "; pass --exclude-leaks to drop them"
            typer.echo(f"warning: {report.summary()}{hint}", err=True)

    _, store = _store(workspace)
    manifest = do_train(store, run, out, options, on_leakage=warn)
    typer.echo(f"trained {manifest['loss']} on {manifest['data']} data of run {run}: {manifest['steps']} steps, "
               f"{manifest['rows']} rows, {manifest['seconds']:.0f}s; saved to {out}")


@app.command()
def evaluate(model: str = typer.Option(..., "--model", help="Trained model folder, or 'default' for the bundled "
                                                            "all-MiniLM-L6-v2."),
             beir: Path = typer.Option(..., "--beir", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)."),
             split: str = typer.Option("test", "--split"),
             precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
             device: str = DeviceOpt,
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """nDCG@10, MRR@10, Recall@100 of a model on a BEIR split (embeddings cached in $NEGSPACE_EMBEDDINGS or
    ~/.cache/negspace/embeddings)."""
    from core.evaluate import collection_from_beir
    from core.evaluate import evaluate as do_evaluate

    result = do_evaluate(model, collection_from_beir(beir, split), precision=precision, device=device)
    if as_json:
        _echo_json(result.to_dict())
        return
    means = result.means()
    typer.echo("  ".join(f"{k} {v:.4f}" for k, v in means.items()) + f"  queries {result.queries}")


@app.command()
def score(run: str = typer.Option(..., "--run", help="The run whose candidates and positives are scored."),
          cross_encoder: Path = typer.Option(..., "--cross-encoder", help="Local sentence-transformers "
                                                                          "CrossEncoder folder (one label)."),
          workspace: Optional[Path] = WorkspaceOpt, device: str = DeviceOpt,
          batch_size: int = typer.Option(32, "--batch-size", help="Pairs per forward pass."),
          suggest_above: Optional[float] = typer.Option(None, "--suggest-above",
                                                        help="Suggest unjudged candidates scored above this as "
                                                             "false negatives (default: RocketQA's 0.9)."),
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Score a run's candidates and its queries' positives with a cross-encoder (cached: a pair is never scored
    twice by one model), for the ce rules, the ce_score risk signal and export provenance."""
    from core.cross_encoder import SUGGEST_ABOVE, score_run

    ws, store = _store(workspace)
    result = score_run(store, ws, run, cross_encoder, device, batch_size,
                       suggest_above=SUGGEST_ABOVE if suggest_above is None else suggest_above)
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(f"scored {result.scored} pairs ({result.cached} of {result.pairs} from cache) with cross-encoder "
               f"{result.model} on {result.device} in {result.seconds:.1f}s; {result.suggested} pseudo-positive "
               f"suggestion(s) opened; re-rule with `rerule --run {run} --rule ce`")


@app.command("train-reranker")
def train_reranker(workspace: Optional[Path] = WorkspaceOpt, dataset: str = typer.Option(..., "--dataset"),
                   split: str = typer.Option("train", "--split", help="Split whose labelled positives are trained on."),
                   out: Path = typer.Option(..., "--out", help="Folder for the cross-encoder (must not exist or be "
                                                               "empty)."),
                   run: Optional[str] = typer.Option(None, "--run", help="Sample negatives from this run's "
                                                                         "candidates (default: random documents)."),
                   negatives: int = typer.Option(4, "--negatives", help="Sampled negatives per labelled positive."),
                   epochs: float = typer.Option(1.0, "--epochs"),
                   batch_size: int = typer.Option(32, "--batch-size"),
                   max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after N optimizer steps."),
                   seed: int = typer.Option(0, "--seed", help="Seeds the negative sampling and the training."),
                   learning_rate: float = typer.Option(2e-5, "--learning-rate"),
                   max_length: int = typer.Option(256, "--max-length", help="Tokens per (query, document) pair, "
                                                                            "kept by the saved model (shorter is "
                                                                            "faster on a CPU)."),
                   device: str = DeviceOpt,
                   base_model: Optional[str] = typer.Option(None, "--base-model", help="Model to start from "
                                                                                       "(default: bundled "
                                                                                       "all-MiniLM-L6-v2).")) -> None:
    """Fine-tune a cross-encoder teacher on a split's positives, sampled negatives and every verdict; saves it with
    manifest.json (then `score --cross-encoder OUT`)."""
    from core.train_reranker import RerankerOptions
    from core.train_reranker import train_reranker as do_train

    options = RerankerOptions(split=split, run=run, negatives=negatives, epochs=epochs, batch_size=batch_size,
                              max_steps=max_steps, seed=seed, learning_rate=learning_rate, max_length=max_length,
                              device=device, base_model=base_model)
    _, store = _store(workspace)
    manifest = do_train(store, dataset, out, options)
    counts = manifest["counts"]
    typer.echo(f"trained a cross-encoder on {counts['pairs']} pairs ({counts['positives']} positives, "
               f"{counts['verdict_positives']}/{counts['verdict_negatives']} verdicts as positives/negatives, "
               f"{counts['run_negatives'] + counts['random_negatives']} sampled negatives): {manifest['steps']} "
               f"steps, {manifest['seconds']:.0f}s on {manifest['device']}; saved to {out}")


@app.command()
def judge(workspace: Optional[Path] = WorkspaceOpt, run: str = typer.Option(..., "--run"),
          endpoint: str = typer.Option(..., "--endpoint", help="OpenAI-compatible base URL, e.g. "
                                                               "http://localhost:8000/v1 (POST {URL}/chat/completions)."),
          model: str = typer.Option(..., "--model", help="Model name the endpoint serves; verdicts are recorded as "
                                                         "annotator llm:MODEL."),
          budget: int = typer.Option(..., "--budget", help="Stop after N answered calls (cached answers are free)."),
          api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="Environment variable holding the "
                                                                                "API key (default: OPENAI_API_KEY "
                                                                                "when set; never stored)."),
          timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for one answer before retrying."),
          device: str = DeviceOpt,
          as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Ask an LLM for verdicts on a run's riskiest unjudged candidates (RLHN's prompt); people's verdicts are
    never sent or touched."""
    from core.llm_judge import judge_run

    ws, store = _store(workspace)
    report = judge_run(store, ws, run, endpoint, model, budget, api_key_env, timeout, device=device)
    if as_json:
        _echo_json(report.to_dict())
        return
    typer.echo(report.summary())


def _run_format_help() -> str:
    from core.run_import import RUN_FORMATS

    return "; ".join(f"{f.name}: {f.description}" for f in RUN_FORMATS.values())


@app.command("import-run")
def import_run(file: Path = typer.Argument(..., help="The other miner's output (file, or a datasets folder for st)."),
               workspace: Optional[Path] = WorkspaceOpt,
               dataset: str = typer.Option(..., "--dataset", help="The dataset (already imported) it was mined from."),
               format: str = typer.Option(..., "--format", help=_run_format_help()),
               split: str = typer.Option("train", "--split", help="Split whose labelled positives the run is of."),
               as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of text.")) -> None:
    """Import another miner's negatives as a read-only run (texts matched to the dataset's ids); prints its id."""
    from core.run_import import import_run as do_import

    _, store = _store(workspace)
    result = do_import(store, file, dataset, format, split)
    if as_json:
        _echo_json(result.to_dict())
        return
    typer.echo(result.run_id)
    typer.echo(result.summary(), err=True)


qrels_app = typer.Typer(no_args_is_help=True, help="TREC qrels into a dataset split (out: export --format trec-qrels).")
app.add_typer(qrels_app, name="qrels")


@qrels_app.command("import")
def qrels_import(file: Path = typer.Argument(..., help="TREC qrels: qid iteration docid grade per line."),
                 workspace: Optional[Path] = WorkspaceOpt, dataset: str = typer.Option(..., "--dataset"),
                 split: str = typer.Option(..., "--split", help="The split these judgments become."),
                 replace: bool = typer.Option(False, "--replace", help="Replace the qrels of an existing split.")
                 ) -> None:
    """Import TREC qrels as a split of an existing dataset (every line checked against its ids first)."""
    from core.datasets import import_qrels

    _, store = _store(workspace)
    typer.echo(import_qrels(store, dataset, file, split, replace).summary())


users_app = typer.Typer(no_args_is_help=True, help="Accounts of a team server (roles: annotator, adjudicator, admin). "
                                                   "The command line is the machine's operator: not restricted "
                                                   "by roles.")
app.add_typer(users_app, name="users")
PasswordStdinOpt = typer.Option(False, "--password-stdin", help="Read the password from the first line of stdin "
                                                                "instead of prompting twice.")


def _read_password(from_stdin: bool) -> str:
    """The new password: stdin's first line (without its line ending), or typed twice at a hidden prompt."""
    from typer.exceptions import Abort

    if from_stdin:
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        return password[:-1] if password.endswith("\r") else password
    try:
        first = typer.prompt("Password", hide_input=True)
        again = typer.prompt("Repeat the password", hide_input=True)
    except Abort:  # end of input or Ctrl-D at the prompt, which is left unfinished: end its line first
        typer.echo(err=True)
        raise UserError("no password given (type it at the prompt, or pass --password-stdin)") from None
    if first != again:
        raise UserError("the two passwords differ; nothing was changed")
    return first


@users_app.command("add")
def users_add(name: str, role: str = typer.Option(..., "--role", help="annotator|adjudicator|admin"),
              workspace: Optional[Path] = WorkspaceOpt, password_stdin: bool = PasswordStdinOpt) -> None:
    """Create an account; the app then asks everyone to sign in (the shared password is no longer asked)."""
    from core import accounts, roles
    from core.workspace import creating_workspace

    accounts.check_account_name(name)
    roles.check_role(role)
    password = _read_password(password_stdin)
    accounts.check_new_password(password)
    with creating_workspace(workspace) as ws:  # a new team server's workspace starts with its first account
        store = ws.store()
        try:
            account = accounts.add(store, name, role, password)
        finally:
            store.close()
    typer.echo(f"added {account.role} {account.name}")


@users_app.command("passwd")
def users_passwd(name: str, workspace: Optional[Path] = WorkspaceOpt,
                 password_stdin: bool = PasswordStdinOpt) -> None:
    """Set an account's password; its open sessions must sign in again."""
    from core import accounts

    _, store = _store(workspace)
    if accounts.get(store, name) is None:  # before asking for a password that would be thrown away
        raise UserError(f"no account {name!r} (see `users list`)")
    accounts.set_password(store, name, _read_password(password_stdin))
    typer.echo(f"changed the password of {name}")


@users_app.command("remove")
def users_remove(name: str, workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Delete an account; its verdicts stay under its name."""
    from core import accounts

    _, store = _store(workspace)
    accounts.remove(store, name)
    typer.echo(f"removed {name}")


@users_app.command("list")
def users_list(workspace: Optional[Path] = WorkspaceOpt,
               as_json: bool = typer.Option(False, "--json", help="Print one JSON array instead of text.")) -> None:
    """Accounts with role and creation time (never password hashes)."""
    from core import accounts

    _, store = _store(workspace)
    listed = accounts.listing(store)
    if as_json:
        _echo_json([{"name": a.name, "role": a.role, "created_at": a.created_at} for a in listed])
        return
    for account in listed:
        typer.echo(f"{account.name}\t{account.role}\t{account.created_at}")


@app.command()
def assign(run: str = typer.Option(..., "--run", help="The run whose queries are split."),
           annotators: Optional[str] = typer.Option(None, "--annotators", help="Comma-separated names, e.g. "
                                                                               "ana,bob,cy (replaces the run's "
                                                                               "split)."),
           overlap: int = typer.Option(1, "--overlap", help="How many of them judge each query."),
           seed: int = typer.Option(0, "--seed", help="Seeds the split (same inputs, same shares)."),
           clear: bool = typer.Option(False, "--clear", help="Remove the run's split: everyone sees every query."),
           workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Split a run's queries among annotators, each query judged by --overlap of them; without --annotators,
    show the split and its progress."""
    from core import assignments
    from core.review import run_outline

    _, store = _store(workspace)
    if clear:
        if annotators is not None:
            raise UserError("--clear removes the split; give --annotators only to make a new one")
        removed = assignments.clear(store, run)
        typer.echo(f"removed the split of {run}" if removed else f"run {run} had no split")
        return
    if annotators is not None:
        assignments.assign(store, run, assignments.parse_names(annotators), overlap, seed)
    found = assignments.plan(store, run)
    if found is None:
        typer.echo(f"run {run} has no split: everyone reviews every query")
        return
    done = assignments.progress(store, run, run_outline(store, run))
    typer.echo(f"{run}: {len(found.annotators)} annotators, overlap {found.overlap}, seed {found.seed}, set "
               f"{found.created_at} by {found.created_by}; {done.reached} of {done.candidates} kept candidates "
               f"judged by {found.overlap}")
    for row in done.people.itertuples(index=False):
        typer.echo(f"{row.annotator}\t{row.queries} queries\t{row.judged}/{row.candidates} judged\t"
                   f"{row.complete} complete")


guidelines_app = typer.Typer(no_args_is_help=True, help="Annotation guidelines per dataset (each save a new "
                                                        "version; every verdict records the version shown).")
app.add_typer(guidelines_app, name="guidelines")


@guidelines_app.command("set")
def guidelines_set(dataset: str = typer.Option(..., "--dataset"),
                   file: Path = typer.Option(..., "--file", help="A UTF-8 text or markdown file."),
                   workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Save a file as the dataset's next guidelines version (unchanged text adds none)."""
    from core import guidelines

    _, store = _store(workspace)
    saved, new = guidelines.save(store, dataset, guidelines.read_file(file))
    typer.echo(f"{'saved' if new else 'unchanged:'} version {saved.version} of the guidelines of {dataset}")


@guidelines_app.command("show")
def guidelines_show(dataset: str = typer.Option(..., "--dataset"),
                    version: Optional[int] = typer.Option(None, "--version", help="Default: the latest."),
                    history: bool = typer.Option(False, "--history", help="List the versions instead."),
                    workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Print the dataset's guidelines (or, with --history, every version's number, time and author)."""
    from core import guidelines

    _, store = _store(workspace)
    if history:
        for row in guidelines.versions(store, dataset):
            typer.echo(f"{row['version']}\t{row['created_at']}\t{row['created_by']}\t{row['characters']} chars")
        return
    found = guidelines.latest(store, dataset, version)
    if found is None:
        raise UserError(f"dataset {dataset!r} has no guidelines" + (f" version {version}" if version else "")
                        + " (set them with `guidelines set`)")
    typer.echo(f"version {found.version}, {found.created_at} by {found.created_by}", err=True)
    typer.echo(found.text, nl=not found.text.endswith("\n"))


audit_app = typer.Typer(no_args_is_help=True, help="Who wrote what, and when.")
app.add_typer(audit_app, name="audit")


@audit_app.command("export")
def audit_export(out: Optional[Path] = typer.Option(None, "--out", help="File to write (default: stdout)."),
                 format: str = typer.Option("tsv", "--format", help="tsv|jsonl"),
                 workspace: Optional[Path] = WorkspaceOpt) -> None:
    """Every audited write and label event, oldest first: time (UTC), actor, action, target, detail."""
    from core import audit

    _, store = _store(workspace)
    if out is None:
        text, _ = audit.render(store, format)
        typer.echo(text, nl=False)
        return
    typer.echo(f"wrote {audit.export(store, out, format)} rows to {out}", err=True)


INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {' '.join(message.splitlines())}", err=True)  # always one line
    sys.exit(code)


def main() -> None:
    """Run a command under the exit contract: 0 done; 2 with one ``error:`` line for a usage error, a user error or
    an environment failure; 130 with one line for Ctrl-C. Anything else is a bug and keeps its traceback."""
    try:
        code = app(standalone_mode=False)  # typer turns Ctrl-C inside a command into the return value 130
    except KeyboardInterrupt:
        code = INTERRUPTED
    except UserError as exc:
        _fail(str(exc))
    except NoArgsIsHelpError:  # no command given: typer has printed the help, and exits 2 as click does
        sys.exit(2)
    except ClickException as exc:  # unknown command, missing option, --depth abc, ...
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint)
    except OSError as exc:  # a disk that is full or read-only under a file written outside the store
        translated = environment_error(exc)
        if translated is None:
            raise
        _fail(str(translated))
    if code == INTERRUPTED:
        _fail("interrupted", INTERRUPTED)
    sys.exit(code or 0)
