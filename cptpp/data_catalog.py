"""The named text and code datasets: their files, official URLs and sha256, in :data:`cptpp.download.DATA`.

Recommendation datasets register themselves in ``cptpp.recsys.datasets.catalog`` (same registry, area
``"recsys"``); :func:`all_datasets` lists every area. Hashes are those of the data mirror's files, as
listed in each mirror folder's SOURCE.txt (byte-identical to the published files unless ``manual``
says otherwise). ``sha256=None``: no copy was available here; the hash is recorded on first download.

To add a dataset: one ``register_data(DataSpec(area, name, files, ...))`` call below (or in the
family's catalog), with one ``RemoteFile(name, url, sha256, member=...)`` per file the loader reads;
``url=None`` plus ``manual=`` when the release is a script or an archive of another layout. The
loader then asks ``data_spec(area, name).path(file, root=..., verify=...)``.
"""
from __future__ import annotations

from pathlib import Path

from cptpp.download import DATA, DataSpec, RemoteFile, data_spec, register_data

_GH = "https://raw.githubusercontent.com"

# ---------------------------------------------------------------- text: SuperGLUE, FewGLUE

SUPERGLUE_ZIP = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/{task}.zip"
_SUPERGLUE = {  # task -> {file: sha256}; BoolQ's train file (>= 4 MiB) has no copy here
    "BoolQ": {"train.jsonl": None,
              "val.jsonl": "0c86a5045886e5795fe9052003873f7d94b88ed3028a33007c51d99e44fd66d9"},
    "CB": {"train.jsonl": "32017480d3a10508646e3efd64502c639f13d4d15077f278d2fd0992c33a3126",
           "val.jsonl": "c6125587e9601560cb16ea223c33964c5a915568d2af68a81f651b6ef25395ec"},
    "COPA": {"train.jsonl": "e74ed25f36119fff954d90900ebbaae277e2cc4864be4b961e7a46c8f67d11a9",
             "val.jsonl": "fa61467cc251010178ed72f8ca82a0fceefc4ca9a85f87ec3b6102955e1a1f1a"},
    "MultiRC": {"train.jsonl": "bb73d0838618f8269190a2533fead3140607558975ea0df6511fa534e8d3535c",
                "val.jsonl": "d2b480195b15574ac00d52c4479f630bc161a7ab2de77e970fd00652846953ee"},
    "RTE": {"train.jsonl": "fdfb03443abe3ec0424b7fc5d1a8863361719bc061338b7a63e56b94d615f201",
            "val.jsonl": "ab990507bf5f35dc176cba7770a72bfa2c50a88ed72b8cc95cfbf9db95ab1af1"},
    "WiC": {"train.jsonl": "ce301970aaf361ade6c1d218fe15c50b185b14a4bcb618c5785a8484a46f9943",
            "val.jsonl": "9f7207c88beba42cbc139de4c62ce05b23bffc189b3d561594b160e0c3920c0b"},
    "WSC": {"train.jsonl": "0ffaa3fd8d21e58a0805962565d1619aa4819bc3d034255777f606f801ae5a42",
            "val.jsonl": "e5c685ea4bdc347354036a28176459f6feeb0b6870375ecfb3d6ddb1f0e28bef"},
}
_FEWGLUE_TRAIN = f"{_GH}/timoschick/fewglue/f52d9515de38cad663869c9e25b79107cda1d345/FewGLUE/{{task}}/train.jsonl"
_FEWGLUE_DEV32 = f"{_GH}/THUDM/P-tuning/f4225d4d8003868b31ed659dfe9732a351ad42d9/FewGLUE_32dev/{{task}}/dev32.jsonl"
_FEWGLUE = {  # task -> (train.jsonl, dev32.jsonl) sha256
    "BoolQ": ("317245ba0842129234a368274701dfc196139aa627eff44aefc827c6888935e1",
              "0af324b658a72fdd7767aa3c27c1dfafbc03e8e987a148b29e42a72d84b9f9e3"),
    "CB": ("e6f446e5f117cbfbcd156d8221d163cc370924fa594a1d67f44a151ce5c171b2",
           "ec7e1bfe37a7ea4514fc2335bfa3b35be77bfe084aae2e7ca55f765aaee41337"),
    "COPA": ("9955ae6e0ee109c96c00c0957d5873c0cb4ea9aced83b6a15b15258bb64b7dd5",
             "eb43b015d061738467f284c60049ef0afcaf707ec8e528ab3c5c4285a5f5618a"),
    "MultiRC": ("e584db1b55f7da7c1e6a2d0a6b56eb6edcaff26e69393d628390e70c39ccb561",
                "3734d2cac8d1e8d13e2f5e13bec727be7576b45453e9fd765e2075e163f9653d"),
    "RTE": ("91a83197e3a286a8bf102e483646f87cd8b1e4c9c5ccd893bc0b9dba0643d580",
            "a3ba6200d2f27691d927ab97d387292b045316956f877fbfccc9a4658af2b351"),
    "WiC": ("b82c0c3f79d2f19bdd3c894f90f9deff0ebff787822a99ff6420db733c2a88f0",
            "3df4ca565f109be9476caa51884ba13c5f2a33c939898cf80bb53e09fdc73062"),
    "WSC": ("e814e1a9a781c1e4b1ad98151f09f2e9326a3db51f9c52639cb0f8b1f428ad47",
            "2bbaca5c995778e7e14f389f1fe9a4be9a58d99e66db0d73d868ab66564b9da7"),
}
for _task, _sums in _SUPERGLUE.items():
    # the official release is one zip per task holding <Task>/{train,val,test}.jsonl
    register_data(DataSpec("text", f"superglue/{_task}", tuple(
        RemoteFile(f, SUPERGLUE_ZIP.format(task=_task), sha, member=f"{_task}/{f}") for f, sha in _sums.items()),
        homepage="https://super.gluebenchmark.com/tasks"))
for _task, (_train, _dev32) in _FEWGLUE.items():
    register_data(DataSpec("text", f"fewglue/{_task}", (
        RemoteFile("train.jsonl", _FEWGLUE_TRAIN.format(task=_task), _train),
        RemoteFile("dev32.jsonl", _FEWGLUE_DEV32.format(task=_task), _dev32)),
        homepage="https://github.com/timoschick/fewglue"))

# ---------------------------------------------------------------- text: PAN-X and UD-POS (XTREME)

_XTREME = ("the official release is a script: run google-research/xtreme scripts/download_data.sh (PAN-X "
           "first needs the AmazonPhotos panx_dataset.tar it names, downloaded by hand) and copy its "
           "download/{folder}/<split>-<lang>.tsv files; the mirrored copies are seeded 2,000-sentence "
           "subsamples of those (the recipe is in the mirror's SOURCE.txt), so full-size files need verify=False")
register_data(DataSpec("text", "wikiann-panx", tuple(RemoteFile(f, None, sha) for f, sha in {
    "train-en.tsv": "809286bb322c820bb2a47994e72d50672ea274d02a9d53fc8b9bdf8c0445ecc5",
    "dev-en.tsv": "c5c22863492835ba1a492593b771b95289842cd710ade1439b72b4c1f0989227",
    "dev-de.tsv": "36d3b5664754b90ea7d5e3d839cd4afe2868d4e645a60d0fc68949523023d91f",
    "dev-zh.tsv": "bb39ed57694f5aa92938fd984be76a0241dfd6ef307dd043431cdae5863e0fa4",
    "dev-ar.tsv": "8bbe74e2799ced5e4b61962701d720fd0db0256e9a17bdfb349d51a3060023c3",
    "dev-hi.tsv": "440eadf30016255ae067ecfb25a49b6f564a558bd25fa085b9b84e17328c02d4",
    "dev-sw.tsv": "980f13712c86cc975dfff00e0e718a9a8b0c0edb4428beb297d0ad28940fb1e5",
    "dev-ja.tsv": "3a198ded8e6a5defb171210ea21eedbc663211d1e4a90de8a5b505127b7ef7a8",
    "dev-ru.tsv": "ed0f75e9acc5ae17c50fe1c922efb40d541a1a9c92b76909367d92ba164019f3",
}.items()), homepage="https://github.com/google-research/xtreme", manual=_XTREME.format(folder="panx")))
register_data(DataSpec("text", "udpos", tuple(RemoteFile(f, None, sha) for f, sha in {
    "train-en.tsv": "6466fddbd1405b67f508e2218fd122d419cd094786ba4e7c47f84adee2c89647",
    "dev-en.tsv": "8cf9fce926daec6b25fd0a93b225e4a640d2f85384519de3fabfa12a6de32f28",
    "test-en.tsv": "973635cc0a3e5233f40d9b3d846cc85a5dd6670a25f7b9c4aee52130d0493ca8",
    "test-zh.tsv": "3c33d99aaad70232bc96c725e3211a93c8ba6598cf5a34c4376fec44939e5c15",
    "test-ar.tsv": "ffd7ce8fc18726c1b153111610407654d4700d75a9b6f4ae1b314cc5171b96c0",
    "test-hi.tsv": "55fbe252704dce0f8128ea16babd4c53f273defc376e7914729c3646156feb0d",
    "test-ja.tsv": "daa1eed8b41159b4143d58939764daa12156ed6cdf632991db47e3f99c0303a5",
}.items()), homepage="https://github.com/google-research/xtreme", manual=_XTREME.format(folder="udpos")))
register_data(DataSpec("text", "udpos/de_gsd", (
    RemoteFile("test-de.tsv", None, "18c2bd15f47292c893b91916d3da5ee36164519dd1238e6bb5dc56d439e50090"),),
    homepage="https://github.com/UniversalDependencies/UD_German-GSD",
    manual=(f"download {_GH}/UniversalDependencies/UD_German-GSD/297fcf350481058d0737a27f0f8fd03b2eadd67a/"
            "de_gsd-ud-test.conllu and write 'FORM<TAB>UPOS' per syntactic word, a blank line between "
            "sentences (comment, multi-word range and empty-node lines dropped)")))

# ---------------------------------------------------------------- text: TNCC, commonsense sets

_TNCC = f"{_GH}/metaphors/TibetanPLMsFineTuning/3756be756375f4fd7202f0d729d0169e136bde9d/dataset/tncc-title"
register_data(DataSpec("text", "tncc-title", tuple(RemoteFile(f, f"{_TNCC}/{f}", sha) for f, sha in {
    "train.txt": "68f2bf54c4c41067f5ad18032e826c69c2d86815c7fc7723981a2c1e6b4d34af",
    "validation.txt": "4e39ee2d9b1e22716107f28aa5a7a5f862374b195e7e7041a7d1836f989d30f7",
    "test.txt": "862449cc58e542f9421e40d91ac540a2e1f3ae4c3b2026c5b88817bc82020481",
}.items()), homepage="https://github.com/metaphors/TibetanPLMsFineTuning"))

_LLM_ADAPTERS = f"{_GH}/AGI-Edgerunners/LLM-Adapters/816657208af4db747803f87ba40a4c71383fed7a/dataset"
COMMONSENSE_FOLDERS = {  # folder in LLM-Adapters/dataset (and in the mirror) -> sha256 of its test.json
    "boolq": "89df2397cbca81dc31adcc6f7f5b635821aa0565aafde46725b2b4bd39b4dfa9",
    "piqa": "3860d11b9b42e590b6b4bbc1643214d373ed0b0d4ac62fcc7bdceb8e044ad141",
    "social_i_qa": "71543f41127451945379d106ffedaef502f1c8770dff6d2f543aca85e3080b1d",
    "winogrande": "6946f5209e7114c65c6d04f8f644c5a061af20d730b1cfe158fff3dc44076fb9",
    "ARC-Easy": "3f32a84716ca6d57d38728bf80cc8117aecd17445c2cf29a68b571b810eb82dc",
    "ARC-Challenge": "4a89ce368ae01a71d268d9851686738b2a0a1d84271116bab49a1dd2b48ecad7",
    "openbookqa": "8479930f7b8a26052c78250280b5465a4016ca7fc806af440d0f37e243f3099e",
}
for _folder, _sha in COMMONSENSE_FOLDERS.items():
    register_data(DataSpec("text", f"commonsense-llm-adapters/{_folder}",
                           (RemoteFile("test.json", f"{_LLM_ADAPTERS}/{_folder}/test.json", _sha),),
                           homepage="https://github.com/AGI-Edgerunners/LLM-Adapters"))

# ---------------------------------------------------------------- code tasks (folders: cptpp.code.task_specs)

_CODEXGLUE = f"{_GH}/microsoft/CodeXGLUE/ac74a62802a0dd159b3258c78a2df8ad36cdf2b9/Code-Code"
register_data(DataSpec("code", "codexglue_java_cs_translation", tuple(
    RemoteFile(f, f"{_CODEXGLUE}/code-to-code-trans/data/{f}", sha) for f, sha in {
        "train.java-cs.txt.java": "397c44e7a0ad250849231a3beeb255ea54078e1cb62cf13359893d474025cb90",
        "train.java-cs.txt.cs": "80013b5b5c7e973df52adec4944b895eaaee0944f09ab6179084631a15d36b7a",
        "valid.java-cs.txt.java": "5cf92447fd81e126c7d791527f71d16dbcb91d3aa4aafda5c7d9d5c30d75a204",
        "valid.java-cs.txt.cs": "513c430d61901a90895b22fb235c532dbdc26b84db9d825e1d04a5856a97aec1",
        "test.java-cs.txt.java": "8e4c9db2467622c119366a89aa0ca798b5f72c11433e3ac3080df21e0e4e06f6",
        "test.java-cs.txt.cs": "7a863a53cba15473d44ef2f7c99096370a204d4c1a54cc3d81c59d4a305756af",
    }.items()), homepage="https://github.com/microsoft/CodeXGLUE"))
register_data(DataSpec("code", "codexglue_bugs2fix_small", tuple(
    RemoteFile(f, f"{_CODEXGLUE}/code-refinement/data/small/{f}", sha) for f, sha in {
        "valid.buggy-fixed.buggy": "e83a0c524cdce5a4492dfe0c9bc7d642aa5ed267ddbae5ffd1e563fe54cae6b8",
        "valid.buggy-fixed.fixed": "dc9c23594350988dcdaf456a1e8eea1dc86c81d1c0ff9985ff6d63d15196ffd2",
        "test.buggy-fixed.buggy": "d2e675094f471b3bfbb9419eb7cf14dca11f8d41185319d3310cbc3f517df323",
        "test.buggy-fixed.fixed": "e7ec462d00d253ddec3d1cef7a06cfc99db1cfe94039a6607ed14afeef6be04a",
    }.items()), homepage="https://github.com/microsoft/CodeXGLUE"))
_TLCODESUM = f"{_GH}/xing-hu/TL-CodeSum/f2c176eb8f7ad7bfb1d7d47efac807f9d21c1085/data"
register_data(DataSpec("code", "tlcodesum_java_summarization", tuple(
    RemoteFile(f, f"{_TLCODESUM}/{f.split('.')[0]}/{f}", sha) for f, sha in {
        "valid.token.code": "e2f6a12244ea0f1078fc10ad3db3fce61bce3e0182e14b334e280475845d7477",
        "valid.token.nl": "b5e729fd0f35f07a8c8ef32bd141b2c0db1a536021eed2b3db6bfaffc659508c",
        "test.token.code": "45200ca3034a13da30de45f65204d1ee315ddf2774718d1c2953f6b7de267eef",
        "test.token.nl": "8423e91de9fabef049b350c58df4772539cc14b6a7b35129e9ef877cdf52efaa",
    }.items()), homepage="https://github.com/xing-hu/TL-CodeSum"))
_DOCSTRING = f"{_GH}/EdinburghNLP/code-docstring-corpus/385207e41898dece913cafb8a5b31144014db29d/parallel-corpus"
register_data(DataSpec("code", "python_code_docstring_v1", tuple(
    RemoteFile(f, f"{_DOCSTRING}/{f}", sha) for f, sha in {
        "data_ps.declarations.valid": "64b7e6eeb20d436a7eac941318c914a5409ee3ede950dfc10c7c829c9e4e4293",
        "data_ps.bodies.valid": "79e25ef5484b93244311f4baa04ae88dc262488e6afec5b9fbab9d71be10fdba",
        "data_ps.descriptions.valid": "1fdbe7923bc0b57b5178de4c5de95a35483687122afcf5481ba1f7143a293fa1",
        "data_ps.declarations.test": "7c628ead5271d0a60103525f5675edaa4347e8d233a9262724e77130cf997cf1",
        "data_ps.bodies.test": "69a1f17fa084d3c5b6f31fe7eac464d64c9405e2543d8171c2fcca96db41c3ff",
        "data_ps.descriptions.test": "1536dcaf3086e577dc1f8e2d0b192a609ed4531f7ec4a2fe7fe6d941eced7ca9",
    }.items()), homepage="https://github.com/EdinburghNLP/code-docstring-corpus"))
register_data(DataSpec("code", "atlas_style_assert_generation", tuple(RemoteFile(f, None, sha) for f, sha in {
    "train.jsonl": "59fdcfb88dd3837039d895d9f3812d70d203dafec7e4a5fa2516e496037cede4",
    "valid.jsonl": "f771d3e7e10359daf04a572f4d3cc79812e37cc97a720ab2c2035d3b8e2d0a7b",
    "test.jsonl": "51bfc948d13df9d2507b2ea3613548aed07766db5b0faba1343957b7f7392c68",
}.items()), homepage="https://sites.google.com/view/atlas-nmt",
    manual=("these ATLAS-style pairs were mined from 11 Apache Commons repositories for this project and have no "
            "public download (the original ATLAS release is not this data); copy the folder from a data mirror "
            "or rebuild it with the recipe in the mirror's SOURCE.txt")))


def all_datasets() -> list[DataSpec]:
    """Every registered dataset, all areas (imports the recsys catalog so its sets are included)."""
    import cptpp.recsys.datasets.catalog  # noqa: F401 -- registers the recsys sets

    return [DATA.get(k) for k in DATA.names()]


def find_data(area: str, relpath: str, *, root: str | Path | None = None, verify: bool = True,
              progress: bool = True, allow_download: bool = True) -> Path:
    """Path of ``relpath`` = ``<dataset name>/<file>`` (e.g. ``"superglue/RTE/train.jsonl"``) of ``area``.

    ``root`` given: only ``<root>/<relpath>`` is looked at (``root`` laid out like
    ``$CPTPP_DATA_MIRROR/<area>``); otherwise mirror -> cache -> official URL. ``verify`` checks the
    registered sha256. An unknown dataset is an error listing the registered ones.
    """
    name, _, file = relpath.rpartition("/")
    return data_spec(area, name).path(file, root=root, verify=verify, progress=progress,
                                      allow_download=allow_download)
