//! Unit tests of the state database: batches round-trip into a resume, spilled jobs come back.

use super::*;

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

fn row(u: &str, path: &str) -> ManifestRow {
    ManifestRow {
        url: u.to_string(),
        page: "http://h/".to_string(),
        name: "n".to_string(),
        path: PathBuf::from(path),
        bytes: 3,
        sha256: "abc".to_string(),
        content_type: "image/png".to_string(),
        width: None,
        height: None,
        duplicate_of: None,
        duplicate_on: None,
        first_seen: None,
        last_seen: None,
        gone_since: None,
        previous: None,
        changed: None,
    }
}

#[test]
fn batches_round_trip_into_a_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let fp = fingerprint(&[url("http://h/")]);
    let mut db = StateDb::open(&path, &fp).unwrap();
    db.apply(&[
        StateOp::PageQueued {
            url: url("http://h/"),
            depth: 0,
            barren: 0,
            redirected_from: vec![],
            spilled: false,
        },
        StateOp::PageQueued {
            url: url("http://h/2"),
            depth: 1,
            barren: 0,
            redirected_from: vec![url("http://h/r")],
            spilled: false,
        },
        StateOp::ImageQueued {
            url: url("http://h/a.png"),
            page: url("http://h/"),
            name: Some("A".into()),
            redirected_from: vec![],
            spilled: false,
        },
        StateOp::ImageQueued {
            url: url("http://h/b.png"),
            page: url("http://h/"),
            name: None,
            redirected_from: vec![],
            spilled: false,
        },
        StateOp::PageDone(url("http://h/")),
    ])
    .unwrap();
    db.apply(&[StateOp::Retry {
        kind: Kind::Page,
        url: url("http://h/2"),
        attempts: 2,
    }])
    .unwrap();
    let lines = db
        .apply(&[StateOp::ImageSaved {
            url: url("http://h/a.png"),
            row: Box::new(row("http://h/a.png", "h/A.png")),
            temp: Some(PathBuf::from(".imgcrawl/tmp/x.part")),
            validators: Default::default(),
        }])
        .unwrap();
    // The batch answers the manifest line of the image it saved, one line per image.
    let line: ManifestRow = serde_json::from_str(lines.strip_suffix('\n').unwrap()).unwrap();
    assert_eq!(line, row("http://h/a.png", "h/A.png"));
    drop(db);

    let mut db = StateDb::open(&path, &fp).unwrap();
    let r = db.resume(100).unwrap();
    assert_eq!(r.seen_pages.len(), 2);
    assert_eq!(r.pages.len(), 1);
    assert_eq!(r.pages[0].url.as_str(), "http://h/2");
    assert_eq!(r.pages[0].redirected_from, vec![url("http://h/r")]);
    assert_eq!(r.pages[0].attempts, 2, "retries are not forgotten");
    assert_eq!(r.images.len(), 1, "a.png is saved, b.png waits");
    assert_eq!(r.images[0].url.as_str(), "http://h/b.png");
    assert_eq!(r.saved.len(), 1);
    assert_eq!(
        db.pending_renames(&[PathBuf::from(".imgcrawl/tmp/x.part")].into())
            .unwrap(),
        vec![(
            PathBuf::from(".imgcrawl/tmp/x.part"),
            PathBuf::from("h/A.png"),
            None
        )]
    );
    // Without its temporary file there, the move was done: nothing is pending.
    assert!(db
        .pending_renames(&std::collections::HashSet::new())
        .unwrap()
        .is_empty());

    let err = StateDb::open(&path, &fingerprint(&[url("http://other/")]))
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("other start URLs: http://h/"),
        "{err}"
    );
}

#[test]
fn spilled_jobs_come_back_once_in_admission_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut db = StateDb::open(&path, "fp").unwrap();
    let page = |n: u32, spilled: bool| StateOp::PageQueued {
        url: url(&format!("http://h/{n}")),
        depth: 1,
        barren: 0,
        redirected_from: vec![],
        spilled,
    };
    let paths =
        |l: Loaded| -> Vec<String> { l.pages.iter().map(|j| j.url.path().to_string()).collect() };
    let load = |take, spilled| LoadSpilled { take, spilled };
    // p0 stays in memory; p1..p5 are spilled.
    db.apply(&[page(0, false), page(1, true), page(2, true), page(3, true)])
        .unwrap();
    db.apply(&[page(4, true), page(5, true)]).unwrap();
    assert_eq!(
        paths(db.load_spilled(Kind::Page, load(2, 5)).unwrap()),
        ["/1", "/2"]
    );
    db.apply(&[page(6, true)]).unwrap();
    assert_eq!(
        paths(db.load_spilled(Kind::Page, load(10, 4)).unwrap()),
        ["/3", "/4", "/5", "/6"]
    );
    // None spilled now: p7 goes to memory, then a new spill starts at p8.
    db.apply(&[page(7, false), page(8, true)]).unwrap();
    assert_eq!(
        paths(db.load_spilled(Kind::Page, load(5, 1)).unwrap()),
        ["/8"]
    );
    assert!(db
        .load_spilled(Kind::Page, load(5, 0))
        .unwrap()
        .pages
        .is_empty());

    // A later run reads the first waiting ones into memory and leaves the rest spilled.
    db.apply(&[
        StateOp::PageDone(url("http://h/0")),
        StateOp::PageDone(url("http://h/2")),
    ])
    .unwrap();
    drop(db);
    let mut db = StateDb::open(&path, "fp").unwrap();
    let r = db.resume(3).unwrap();
    let first: Vec<&str> = r.pages.iter().map(|j| j.url.path()).collect();
    assert_eq!(first, ["/1", "/3", "/4"]);
    assert_eq!((r.pages_spilled, r.seen_pages.len()), (4, 9));
    assert_eq!(
        paths(db.load_spilled(Kind::Page, load(4, 4)).unwrap()),
        ["/5", "/6", "/7", "/8"]
    );
}

/// Saves `rows` (URL, path, duplicate of) in `db`, each with the validators `"v1"`.
fn save(db: &mut StateDb, rows: &[(&str, &str, Option<&str>)]) {
    let mut ops = Vec::new();
    for (u, path, dup) in rows {
        ops.push(StateOp::ImageQueued {
            url: url(u),
            page: url("http://h/"),
            name: None,
            redirected_from: vec![],
            spilled: false,
        });
        let mut r = row(u, path);
        r.duplicate_of = dup.map(PathBuf::from);
        ops.push(StateOp::ImageSaved {
            url: url(u),
            row: Box::new(r),
            temp: None,
            validators: Validators {
                etag: Some("\"v1\"".into()),
                modified: None,
            },
        });
    }
    db.apply(&ops).unwrap();
}

#[test]
fn a_saved_image_asked_for_again_stays_saved_whatever_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut db = StateDb::open(&path, "fp").unwrap();
    save(
        &mut db,
        &[
            ("http://h/a.png", "h/a.png", None),
            ("http://h/copy.png", "h/a.png", Some("h/a.png")),
            ("http://h/b.png", "h/b.png", None),
            ("http://h/c.png", "h/c.png", None),
        ],
    );
    db.finish_run().unwrap();
    assert_eq!(db.begin(true).unwrap(), super::runs::Begun::Update);
    let revalidate = |u: &str| StateOp::ImageRevalidating {
        url: url(u),
        spilled: false,
    };
    db.apply(&[
        revalidate("http://h/a.png"),
        revalidate("http://h/b.png"),
        revalidate("http://h/c.png"),
    ])
    .unwrap();
    // A kill now: they come back as jobs, still saved, with their validators.
    let resume = db.resume(100).unwrap();
    let urls: Vec<&str> = resume.images.iter().map(|j| j.url.as_str()).collect();
    assert_eq!(urls, ["http://h/a.png", "http://h/b.png", "http://h/c.png"]);
    assert!(resume.images.iter().all(|j| j.revalidate));
    assert!(resume.revalidating.contains(&url("http://h/b.png")));
    assert_eq!(resume.saved.len(), 4);
    let saved = db.saved_image(&url("http://h/a.png")).unwrap().unwrap();
    assert_eq!(saved.validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(saved.row.path, Path::new("h/a.png"));
    // a.png has new bytes under its name (the old file kept as .prev), b.png failed, c.png is
    // unchanged with new validators.
    let mut new = row("http://h/a.png", "h/a.png");
    new.sha256 = "def".into();
    new.previous = Some(PathBuf::from("h/a.prev.png"));
    db.apply(&[
        StateOp::ImageSaved {
            url: url("http://h/a.png"),
            row: Box::new(new),
            temp: Some(PathBuf::from(".imgcrawl/tmp/1.part")),
            validators: Validators {
                etag: Some("\"v2\"".into()),
                modified: None,
            },
        },
        StateOp::Failed(Kind::Image, url("http://h/b.png")),
        StateOp::ImageUnchanged {
            url: url("http://h/c.png"),
            validators: Some(Validators {
                etag: Some("\"c2\"".into()),
                modified: None,
            }),
        },
    ])
    .unwrap();
    let resume = db.resume(100).unwrap();
    assert!(
        resume.images.is_empty(),
        "nothing waits: {:?}",
        resume.images
    );
    let rows = db.saved_rows().unwrap();
    // Still in the order first saved; the copy of the old bytes follows them to .prev.
    let paths: Vec<(&str, &Path)> = rows
        .iter()
        .map(|r| (r.url.as_str(), r.path.as_path()))
        .collect();
    assert_eq!(
        paths,
        [
            ("http://h/a.png", Path::new("h/a.png")),
            ("http://h/copy.png", Path::new("h/a.prev.png")),
            ("http://h/b.png", Path::new("h/b.png")),
            ("http://h/c.png", Path::new("h/c.png")),
        ]
    );
    assert_eq!(
        rows[1].duplicate_of.as_deref(),
        Some(Path::new("h/a.prev.png"))
    );
    assert_eq!(rows[0].sha256, "def");
    let c = db.saved_image(&url("http://h/c.png")).unwrap().unwrap();
    assert_eq!(c.validators.etag.as_deref(), Some("\"c2\""));
    // The replacement's move is pending until the files are in place.
    assert_eq!(
        db.pending_renames(&[PathBuf::from(".imgcrawl/tmp/1.part")].into())
            .unwrap(),
        [(
            PathBuf::from(".imgcrawl/tmp/1.part"),
            PathBuf::from("h/a.png"),
            Some(PathBuf::from("h/a.prev.png"))
        )]
    );
    // a.png is dated: first seen in run 1, changed in run 2.
    let mut runs = Vec::new();
    db.each_saved_row(|r| runs.push((r.first_run, r.last_run, r.changed_run)))
        .unwrap();
    assert_eq!(runs[0], (1, 2, Some(2)));
    assert_eq!(runs[2], (1, 1, None), "b.png failed: not seen in run 2");
    assert_eq!(runs[3], (1, 2, None));
}
