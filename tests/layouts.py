"""Writers of small MovieLens fixtures in each GroupLens layout (the tests make their own data)."""

from __future__ import annotations

from pathlib import Path

GENRE_FLAGS = ["0"] * 19


def item_line(movie_id: int, title: str, year: int | None = 1995, genres=(8,)) -> str:
    flags = list(GENRE_FLAGS)
    for genre in genres:
        flags[genre] = "1"
    date = f"01-Jan-{year}" if year else ""
    return f"{movie_id}|{title}|{date}|||" + "|".join(flags)


def write_ml100k(folder: Path, rating_lines=None, user_lines=None, item_lines=None) -> Path:
    """A valid ml-100k folder with 5 users, 6 movies and 20 ratings, or the given lines."""
    folder.mkdir(parents=True, exist_ok=True)
    if user_lines is None:
        user_lines = [f"{u}|{20 + u}|{'MF'[u % 2]}|student|1000{u}" for u in range(1, 6)]
    if item_lines is None:
        item_lines = [item_line(m, f"Movie {m} (199{m})", 1990 + m, genres=(m % 19,)) for m in range(1, 7)]
    if rating_lines is None:
        rating_lines = default_rating_lines()
    (folder / "u.user").write_bytes(("\n".join(user_lines) + "\n").encode("latin-1"))
    (folder / "u.item").write_bytes(("\n".join(item_lines) + "\n").encode("latin-1"))
    data = b"\n".join(line if isinstance(line, bytes) else line.encode("latin-1") for line in rating_lines) + b"\n"
    (folder / "u.data").write_bytes(data)
    return folder


def default_rating_lines() -> list:
    lines = []
    stamp = 880000000
    for u in range(1, 6):
        for m in range(1, 5):
            lines.append(f"{u}\t{m}\t{1 + (u + m) % 5}\t{stamp + 60 * len(lines)}")
    return lines


def write_ml1m(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_bytes(b"1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n")
    (folder / "movies.dat").write_bytes(
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "2::Jumanji (1995)::Adventure|Children's|Fantasy\n"
        "3::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n".encode("latin-1")
    )
    (folder / "ratings.dat").write_bytes(
        b"1::1::5::978300760\n1::2::3::978302109\n2::3::4::978301968\n3::1::2::978300275\n"
    )
    return folder


def write_mllatest(folder: Path, extra_rating_lines=(), extra_movie_lines=()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    movies = [
        "movieId,title,genres",
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
        '11,"American President, The (1995)",Comedy|Drama|Romance',
        "12,Amélie (2001),Comedy|Romance",
        "13,Untitled,(no genres listed)",
        *extra_movie_lines,
    ]
    (folder / "movies.csv").write_bytes(_join(movies))
    ratings = [
        "userId,movieId,rating,timestamp",
        "1,1,4.0,964982703", "1,11,3.5,964981247", "2,12,0.5,964982224", "2,1,5.0,964983815",
        "3,13,2.5,964982931",
        *extra_rating_lines,
    ]
    (folder / "ratings.csv").write_bytes(_join(ratings))
    return folder


def _join(lines) -> bytes:
    """Lines given as text (UTF-8) or as raw bytes (to inject bytes that do not decode)."""
    return b"\n".join(line if isinstance(line, bytes) else line.encode("utf-8") for line in lines) + b"\n"
