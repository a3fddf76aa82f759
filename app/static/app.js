// imgsearch search page: talks to the JSON API only; every text reaches the DOM through textContent.
"use strict";

(() => {
  const PAGE_SIZE = 24;
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("search-form"),
    query: $("query"),
    file: $("file-input"),
    status: $("index-status"),
    intro: $("intro"),
    summary: $("summary"),
    summaryImage: $("summary-image"),
    summaryText: $("summary-text"),
    clear: $("clear-button"),
    message: $("message"),
    results: $("results"),
    sentinel: $("sentinel"),
    loading: $("loading"),
    end: $("end"),
    overlay: $("drop-overlay"),
    viewer: $("viewer"),
    viewerImage: $("viewer-image"),
    viewerTitle: $("viewer-title"),
    viewerScore: $("viewer-score"),
    viewerSize: $("viewer-size"),
    viewerDuplicates: $("viewer-duplicates"),
    viewerId: $("viewer-id"),
    viewerClose: $("viewer-close"),
    describe: $("describe-button"),
    similar: $("similar-button"),
    original: $("original-link"),
    download: $("download-link"),
    alternates: $("alternate-links"),
    description: $("description"),
    descriptionText: $("description-text"),
    descriptionLabels: $("description-labels"),
    prev: $("prev-button"),
    next: $("next-button"),
    signin: $("signin"),
    signinForm: $("signin-form"),
    signinKey: $("signin-key"),
    signinError: $("signin-error"),
    signout: $("signout-button"),
    filters: $("filters"),
    filterControls: $("filter-controls"),
    likeChip: $("like-chip"),
    likeImage: $("like-image"),
    likeName: $("like-name"),
    likeClear: $("like-clear"),
    viewerFolder: $("viewer-folder"),
    viewerTaken: $("viewer-taken"),
    viewerMatched: $("viewer-matched"),
    understood: $("understood"),
  };

  // One search at a time; `generation` discards answers to searches that were replaced.
  const state = {
    mode: null, // "text" | "image"
    query: "",
    blob: null,
    offset: 0,
    loading: false,
    done: true,
    generation: 0,
    items: [],
    current: -1,
    previewUrl: null,
    like: null, // {id, name}: "more like this" image, refined by any text typed next
    filters: [], // one control per filter the service takes: {spec, element, values(), set(values)}
    folders: null, // [{folder, count}] from GET folders
    noCatalog: false, // an index built before metadata: it takes no filter (409)
    understand: true, // read dates and places from the words (off: `understand=false`, searched as typed)
    understood: null, // what the last text search read (its `understood`)
    people: [], // the index's people (GET people, loaded by the strip): the person control lists them
  };
  // Why a result is here, in words: `matched` of the API.
  const SIGNALS = {
    semantic: "meaning", name: "name", folder: "folder", metadata: "tags", text: "text in picture", place: "place",
    person: "person",
  };
  let strip = null; // the people strip (static/people.js), made once the page's functions exist
  // A lender's file name when it is among the results shown, else what it is.
  const lenderName = (id) => {
    const found = state.items.find((other) => other.id === id);
    return found ? baseName(found.source) : "a named image";
  };
  // similar_named: "looks like red-car.jpg" (the named images whose words it borrowed, `borrowed_from`)
  const signal = (item, name) =>
    name === "similar_named"
      ? `looks like ${(item.borrowed_from || []).map(lenderName).join(", ") || "a named image"}`
      : SIGNALS[name] || name;
  const why = (item) => (item.matched || []).map((name) => signal(item, name)).join(" · ");
  // The parts of a score, in words: `scores` of the API ("meaning 0.81 · names 0.00").
  const PARTS = { semantic: "meaning", lexical: "names, folders, tags", propagated: "names of look-alikes" };
  const parts = (item) =>
    Object.entries(item.scores || {})
      .map(([part, value]) => `${PARTS[part] || part} ${value.toFixed(2)}`)
      .join(" · ");

  const imageUrl = (id) => `images/${encodeURIComponent(id)}`;
  // what a browser shows: the original, or a JPEG of it where the browser cannot (HEIC, JPEG XL, RAW)
  const viewUrl = (id) => `${imageUrl(id)}/view`;
  const fileName = (source) => source.split(/[\\/#]/).pop() || "";
  const thumbnailUrl = (id) => `images/${encodeURIComponent(id)}/thumbnail`;
  const baseName = (path) => path.split("/").pop() || path;
  const formatScore = (score) => score.toFixed(3);

  class ApiError extends Error {}
  class AuthError extends ApiError {} // 401: the service has a read key and this browser no session

  async function api(path, options = {}) {
    let response;
    try {
      response = await fetch(path, options);
    } catch (error) {
      throw new ApiError("The service cannot be reached. Is it running?");
    }
    const type = response.headers.get("content-type") || "";
    const body = type.includes("application/json") ? await response.json().catch(() => null) : null;
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`;
      throw response.status === 401 ? new AuthError(detail) : new ApiError(detail);
    }
    return body;
  }

  const messageOf = (error) => (error instanceof ApiError ? error.message : String(error));

  function showMessage(text, kind = "info") {
    el.message.textContent = text;
    el.message.dataset.kind = kind;
    el.message.hidden = !text;
  }

  function setLoading(on) {
    state.loading = on;
    el.loading.hidden = !on;
  }

  // ---- results grid -------------------------------------------------------------------------

  function card(item, index) {
    const li = document.createElement("li");
    li.className = "card";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "card-button";
    button.setAttribute("aria-label", `Open ${item.source}`);
    button.addEventListener("click", () => openViewer(index));

    const frame = document.createElement("div");
    frame.className = "thumb";
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = item.source;
    img.src = thumbnailUrl(item.id);
    img.addEventListener("load", () => frame.classList.add("loaded"));
    img.addEventListener("error", () => frame.classList.add("broken"));
    frame.append(img);
    if (item.duplicates > 0) {
      const badge = document.createElement("span");
      badge.className = "dup-badge";
      badge.textContent = `+${item.duplicates} similar`;
      badge.title = `${item.duplicates} near-duplicate${item.duplicates > 1 ? "s" : ""} folded into this result`;
      frame.append(badge);
    }

    const meta = document.createElement("div");
    meta.className = "card-meta";
    const name = document.createElement("span");
    name.className = "card-name";
    name.textContent = baseName(item.source);
    name.title = item.source;
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = formatScore(item.score);
    score.title = `relevance, 0–1 (1: the best match)${parts(item) ? `: ${parts(item)}` : ""}`;
    meta.append(name, score);
    const reason = document.createElement("div");
    reason.className = "card-why";
    reason.textContent = why(item);
    reason.title = "why this result matched";

    const bar = document.createElement("div");
    bar.className = "score-bar";
    const fill = document.createElement("span");
    fill.style.width = `${Math.round(Math.max(0, Math.min(1, item.score)) * 100)}%`;
    bar.append(fill);

    button.append(frame, meta, reason, bar);
    li.append(button);
    return li;
  }

  // The filters' parameters, as GET search and the form of search/image take them (and the URL keeps).
  const filterParams = () => state.filters.flatMap((c) => c.values().map((value) => [c.spec.param, value]));

  // The order and the relevance cutoff: `sort` and `min_score`, as every search takes them.
  function orderParams() {
    const found = [];
    const sort = $("sort").value;
    if (sort && sort !== "relevance") found.push(["sort", sort]);
    const floor = $("min-score").value.trim();
    if (floor) found.push(["min_score", floor]);
    return found;
  }

  // The text search's query string: words, the liked image, the filters and the order.
  function searchParams() {
    const params = new URLSearchParams({ top_k: String(PAGE_SIZE), offset: String(state.offset) });
    if (state.query) params.set("q", state.query);
    if (state.like) params.set("like", state.like.id);
    if (!state.understand) params.set("understand", "false");
    for (const [name, value] of [...filterParams(), ...orderParams()]) params.append(name, value);
    return params;
  }

  // The page's URL says what is searched, with every filter: a reload or a bookmark restores it.
  function syncUrl() {
    const url = new URL(window.location.href);
    const params = new URLSearchParams();
    if (state.mode === "text" && state.query) params.set("q", state.query);
    if (state.mode === "text" && state.query && !state.understand) params.set("understand", "false");
    for (const [name, value] of [...filterParams(), ...orderParams()]) params.append(name, value);
    url.search = params.toString();
    history.replaceState(null, "", url);
    if (strip) strip.mark();
  }

  async function loadMore() {
    if (state.loading || state.done || !state.mode) return;
    const generation = state.generation;
    const firstPage = state.offset === 0;
    setLoading(true);
    try {
      let body;
      if (state.mode === "text") {
        body = await api(`search?${searchParams()}`);
        if (generation === state.generation && firstPage) showUnderstood(body.understood);
      } else {
        const form = new FormData();
        form.append("image", state.blob, state.blob.name || "query-image");
        form.append("top_k", String(PAGE_SIZE));
        form.append("offset", String(state.offset));
        for (const [name, value] of [...filterParams(), ...orderParams()]) form.append(name, value);
        body = await api("search/image", { method: "POST", body: form });
      }
      if (generation !== state.generation) return;
      const fragment = document.createDocumentFragment();
      for (const item of body.results) {
        state.items.push(item);
        fragment.append(card(item, state.items.length - 1));
      }
      el.results.append(fragment);
      state.offset += body.results.length;
      state.done = body.results.length < PAGE_SIZE;
      if (state.items.length === 0) showMessage("No results.");
      el.end.hidden = !(state.done && state.items.length > 0);
      updateSummary(body.total);
    } catch (error) {
      if (generation !== state.generation) return;
      state.done = true;
      if (error instanceof AuthError) {
        showSignIn();
        return;
      }
      showMessage(messageOf(error), "error");
      summariseFailure();
    } finally {
      if (generation === state.generation) {
        setLoading(false);
        // Re-arm the observer: if the sentinel is still on screen, the next page loads at once.
        observer.unobserve(el.sentinel);
        if (!state.done) observer.observe(el.sentinel);
      }
    }
  }

  const observer = new IntersectionObserver(
    (entries) => {
      if (entries.some((entry) => entry.isIntersecting)) loadMore();
    },
    { rootMargin: "300px 0px" },
  );

  function startSearch(mode, { query = "", blob = null, preview = null } = {}) {
    state.generation += 1;
    Object.assign(state, { mode, query, blob, offset: 0, done: false, items: [], current: -1 });
    el.understood.hidden = true;
    if (state.previewUrl && state.previewUrl !== preview) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = preview && preview.startsWith("blob:") ? preview : null;
    el.results.replaceChildren();
    el.end.hidden = true;
    el.intro.hidden = true;
    showMessage("");
    el.summary.hidden = false;
    el.summaryImage.hidden = !preview;
    if (preview) el.summaryImage.src = preview;
    else el.summaryImage.removeAttribute("src");
    el.summaryText.textContent =
      mode === "text" && query ? `Searching for “${query}”…` : state.like ? "Searching for more like this…" : "Searching by image…";
    setLoading(false);
    syncUrl();
    observer.unobserve(el.sentinel);
    observer.observe(el.sentinel);
    window.scrollTo({ top: 0 });
  }

  // A failed search never leaves "Searching…" behind: the summary says what failed, the message why.
  function summariseFailure() {
    if (state.items.length > 0) {
      el.summaryText.textContent = `${state.items.length} results; the next page could not be loaded`;
    } else if (state.mode === "text" && !state.query && state.like) {
      el.summaryText.textContent = `The search for more like ${state.like.name} failed`;
    } else if (state.mode === "text") {
      el.summaryText.textContent = `The search for “${state.query}” failed`;
    } else {
      const name = state.blob && state.blob.name ? state.blob.name : "the image";
      el.summaryText.textContent = `The search by ${name} failed`;
    }
    el.end.hidden = true;
  }

  function updateSummary(total) {
    const shown = state.items.length;
    const of = `${shown}${state.done ? "" : "+"} result${shown === 1 ? "" : "s"} from ${total} images`;
    if (state.mode === "text" && state.like && !state.query) {
      el.summaryText.textContent = `${of} that look like ${state.like.name}`;
    } else if (state.mode === "text") {
      const like = state.like ? `, like ${state.like.name}` : "";
      el.summaryText.textContent = `${of} for “${state.query}”${like}`;
    } else {
      const name = state.blob && state.blob.name ? state.blob.name : "the image";
      el.summaryText.textContent = `${of} that look like ${name}`;
    }
  }

  // ---- what was read from the words: one removable chip per date or place -----------------------

  const controlOf = (name) => state.filters.find((control) => control.spec.name === name);

  function readChip(text, title, buttonLabel, onClick, off = false) {
    const span = document.createElement("span");
    span.className = off ? "read-chip off" : "read-chip";
    span.title = title;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "ghost";
    button.textContent = off ? "read them" : "×";
    button.setAttribute("aria-label", buttonLabel);
    button.addEventListener("click", onClick);
    span.append(text, button);
    return span;
  }

  function showUnderstood(understood) {
    state.understood = understood || null;
    const read = understood ? understood.read : [];
    const people = understood ? understood.people || [] : [];
    const named = new Map(people.map((person) => [person.name.toLowerCase(), person.name]));
    const chips = read.map((item) => {
      const notes = (understood.notes || []).join("\n");
      if (item.kind === "date") {
        const range = `${understood.taken_after || "…"} – ${understood.taken_before || "…"}`;
        const label = `Do not read “${item.phrase}” as a date`;
        return readChip(`“${item.phrase}”: ${range}`, notes, label, () => unread("date"));
      }
      if (item.kind === "person") {
        const who = named.get(item.phrase.split(/\s+/).join(" ").toLowerCase()) || item.phrase;
        const label = `Do not read “${item.phrase}” as a person`;
        return readChip(`“${item.phrase}”: ${who}`, notes, label, () => unread("person"));
      }
      const place = understood.place || { name: item.phrase, use: "filter", why: "" };
      const how = place.use === "preference" ? " (preferred)" : "";
      const title = [place.why, notes].filter(Boolean).join("\n");
      const label = `Do not read “${item.phrase}” as a place`;
      return readChip(`“${item.phrase}”: ${place.name}${how}`, title, label, () => unread("place"));
    });
    if (!state.understand && state.mode === "text" && state.query) {
      const again = () => {
        state.understand = true;
        searchText(state.query);
      };
      const title = "Dates and places in the words are not read";
      chips.push(readChip("Words searched as typed ", title, "Read dates and places", again, true));
    }
    el.understood.replaceChildren(...chips);
    el.understood.hidden = chips.length === 0;
  }

  // Removing a chip searches the words as typed, the other readings kept as explicit filters.
  function unread(kind) {
    const understood = state.understood;
    if (!understood) return;
    const keep = (name, value) => {
      const control = controlOf(name);
      if (control && value) control.set([value]);
    };
    if (kind !== "date") {
      keep("taken_after", understood.taken_after);
      keep("taken_before", understood.taken_before);
    }
    const place = understood.place;
    if (kind !== "place" && place && place.use === "filter") keep("place", place.name);
    const people = understood.people || [];
    if (kind !== "person" && people.length === 1) keep("person", people[0].id); // one control: one person
    state.understand = false;
    searchText(state.query);
  }

  function searchText(query) {
    const text = query.trim();
    if (!text && !state.like) {
      clearSearch(); // a blank search goes back to the start, leaving no old error or result behind
      return;
    }
    el.query.value = text;
    startSearch("text", { query: text, preview: state.like ? thumbnailUrl(state.like.id) : null });
  }

  function searchImage(blob, preview) {
    if (!blob || !(blob.type || "").startsWith("image/")) {
      showMessage("That file is not an image.", "error");
      return;
    }
    el.query.value = "";
    setLike(null);
    startSearch("image", { blob, preview: preview || URL.createObjectURL(blob) });
  }

  function setLike(like) {
    state.like = like;
    el.likeChip.hidden = !like;
    el.likeName.textContent = like ? like.name : "";
    if (like) el.likeImage.src = thumbnailUrl(like.id);
    else el.likeImage.removeAttribute("src");
  }

  // A changed filter reruns the search in place, by words or by the same image.
  function refilter() {
    if (state.mode === "text") searchText(state.query);
    else if (state.mode === "image") startSearch("image", { blob: state.blob, preview: state.previewUrl });
    else syncUrl();
  }

  // Folders with their image counts; an index built before metadata hides the filters (409).
  async function loadFolders() {
    try {
      state.folders = (await api("folders")).folders;
      state.noCatalog = false;
    } catch (error) {
      state.noCatalog = true;
    }
    showFilters();
    el.filters.hidden = false; // "more like this" shows its image there, filters or not
  }

  // ---- filter controls: one per filter the service takes (GET search/filters, static/filters.js) --

  // The controls once made, with the folder list and hidden for an index without metadata.
  function showFilters() {
    for (const control of state.filters) {
      control.element.hidden = state.noCatalog;
      if (control.fill && state.folders) control.fill(state.folders);
      if (control.people) control.people(state.people);
    }
  }

  let filtersLoaded = null;
  function loadFilters() {
    filtersLoaded =
      filtersLoaded ||
      api("search/filters")
        .then((body) => {
          const made = body.filters.map((spec) => filterControl(spec, refilter));
          state.filters = made.filter((control) => control !== null);
          el.filterControls.replaceChildren(...state.filters.map((control) => control.element));
          showFilters();
        })
        .catch((error) => {
          filtersLoaded = null;
          throw error;
        });
    return filtersLoaded;
  }

  // The filters and the search the URL names (a reload, a bookmark, a shared link).
  async function begin() {
    try {
      await loadFilters();
    } catch (error) {
      if (error instanceof AuthError) {
        showSignIn();
        return;
      }
      // Without the filter list the page still searches, unfiltered.
    }
    const params = new URLSearchParams(window.location.search);
    for (const control of state.filters) control.set(params.getAll(control.spec.param));
    $("sort").value = ["newest", "oldest"].includes(params.get("sort")) ? params.get("sort") : "relevance";
    $("min-score").value = params.get("min_score") || "";
    const wanted = params.get("q");
    state.understand = params.get("understand") !== "false";
    if (wanted) searchText(wanted);
    else el.query.focus();
  }

  function clearSearch() {
    setLike(null);
    state.generation += 1;
    Object.assign(state, { mode: null, query: "", blob: null, offset: 0, done: true, items: [] });
    state.understand = true;
    el.results.replaceChildren();
    el.summary.hidden = true;
    el.intro.hidden = !el.signin.hidden;
    el.end.hidden = true;
    el.query.value = "";
    showMessage("");
    setLoading(false);
    syncUrl();
    el.query.focus();
  }

  // ---- viewer -------------------------------------------------------------------------------

  function openViewer(index) {
    const item = state.items[index];
    if (!item) return;
    state.current = index;
    el.viewerImage.src = viewUrl(item.id);
    el.viewerImage.alt = item.source;
    el.viewerTitle.textContent = item.source;
    el.viewerTitle.title = item.source;
    el.viewerScore.textContent = formatScore(item.score) + (parts(item) ? ` (${parts(item)})` : "");
    el.viewerSize.textContent = `${item.width} × ${item.height} px`;
    el.viewerFolder.textContent = item.folder || "(top folder)";
    el.viewerTaken.textContent = item.taken_at ? item.taken_at.replace("T", " ") : "unknown";
    el.viewerMatched.textContent = why(item) || "—";
    el.viewerDuplicates.textContent = item.duplicates > 0 ? String(item.duplicates) : "none";
    el.viewerId.textContent = item.id;
    el.original.href = viewUrl(item.id);
    el.download.href = imageUrl(item.id);
    el.download.setAttribute("download", fileName(item.source));
    $("viewer-people-row").hidden = true;
    showAlternates(item, index);
    el.description.hidden = true;
    el.descriptionText.textContent = "";
    el.descriptionLabels.replaceChildren();
    el.describe.disabled = false;
    el.describe.textContent = "Describe";
    el.similar.disabled = false;
    el.prev.disabled = index === 0;
    el.next.disabled = index >= state.items.length - 1 && state.done;
    if (!el.viewer.open) el.viewer.showModal();
  }

  // The other originals of the shot (the camera RAW beside a JPEG), each offered as a download, and
  // the named people in it.
  async function showAlternates(item, index) {
    el.alternates.replaceChildren();
    let meta;
    try {
      meta = await api(`${imageUrl(item.id)}/metadata`);
    } catch (error) {
      return; // an index without metadata has no alternates to offer
    }
    if (state.current !== index || !meta) return;
    const named = Array.isArray(meta.people) ? meta.people.map((person) => person.name).filter(Boolean) : [];
    $("viewer-people").textContent = named.join(", "); // the named people whose faces are in it
    $("viewer-people-row").hidden = named.length === 0;
    if (!Array.isArray(meta.alternates)) return;
    el.alternates.replaceChildren(
      ...meta.alternates.map((alternate, number) => {
        const link = document.createElement("a");
        link.className = "button-link";
        link.href = `${imageUrl(item.id)}/alternates/${number}`;
        link.setAttribute("download", alternate.name);
        link.textContent = `Download ${alternate.format} (${alternate.name})`;
        return link;
      }),
    );
  }

  async function describeCurrent() {
    const item = state.items[state.current];
    if (!item) return;
    const index = state.current;
    el.describe.disabled = true;
    el.describe.textContent = "Describing…";
    try {
      const body = await api("describe", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ image_id: item.id }),
      });
      if (index !== state.current) return;
      el.descriptionText.textContent = body.description;
      // The labels the sentence rests on are marked; its confidence is the subject's probability.
      const used = new Set((body.evidence || []).flatMap((item) => item.labels));
      el.descriptionText.title =
        body.confidence == null ? "" : `confidence ${Math.round(body.confidence * 100)}%`;
      el.descriptionLabels.replaceChildren(
        ...body.labels.map((label) => {
          const li = document.createElement("li");
          if (used.has(label.label)) {
            li.className = "label-evidence";
            li.title = "the description rests on this label";
          }
          const name = document.createElement("span");
          name.textContent = label.label;
          const value = document.createElement("span");
          value.className = "label-score";
          value.textContent = `${Math.round(label.score * 100)}%`;
          li.append(name, value);
          return li;
        }),
      );
      el.description.hidden = false;
    } catch (error) {
      if (index !== state.current) return;
      if (error instanceof AuthError) {
        showSignIn();
        return;
      }
      el.descriptionText.textContent = messageOf(error);
      el.descriptionLabels.replaceChildren();
      el.description.hidden = false;
    } finally {
      if (index === state.current) {
        el.describe.disabled = false;
        el.describe.textContent = "Describe";
      }
    }
  }

  // More like this: a search by the indexed image's own look; words typed next refine it.
  function moreLikeCurrent() {
    const item = state.items[state.current];
    if (!item) return;
    el.viewer.close();
    setLike({ id: item.id, name: baseName(item.source) });
    searchText("");
  }

  async function step(delta) {
    const target = state.current + delta;
    if (target < 0) return;
    if (target >= state.items.length && !state.done) await loadMore();
    if (target < state.items.length) openViewer(target);
  }

  // ---- readiness ----------------------------------------------------------------------------

  // Polls /readyz until the service is ready or failed; a newer call (after signing in) replaces it.
  let readinessRun = 0;
  async function watchReadiness() {
    const run = ++readinessRun;
    for (;;) {
      try {
        const response = await fetch("readyz");
        if (run !== readinessRun) return;
        if (response.status === 401) {
          showSignIn();
          return;
        }
        const body = await response.json();
        el.signout.hidden = !body.read_key;
        const warnings = Array.isArray(body.warnings) ? body.warnings : [];
        if (response.ok) {
          loadFolders();
          strip.load();
          el.status.textContent = `${body.images.toLocaleString()} images · ${body.profile}`;
          el.status.title = warnings.join("\n");
          el.status.dataset.state = warnings.length ? "warning" : "ready";
          return;
        }
        el.status.textContent = body.status === "failed" ? "Service unavailable" : "Warming up…";
        el.status.title = body.detail || "";
        el.status.dataset.state = body.status;
        if (body.status === "failed") {
          if (!state.mode) showMessage(`The service is unavailable: ${body.detail}`, "error");
          return;
        }
      } catch (error) {
        if (run !== readinessRun) return;
        el.status.textContent = "Offline";
        el.status.title = "";
        el.status.dataset.state = "failed";
      }
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
  }

  // ---- sign-in (only when the service has a read key) -----------------------------------------

  function showSignIn() {
    state.generation += 1; // drop answers to anything still in flight
    Object.assign(state, { mode: null, offset: 0, done: true, items: [] });
    if (el.viewer.open) el.viewer.close();
    el.results.replaceChildren();
    for (const part of [el.intro, el.summary, el.end, el.loading, el.signout]) part.hidden = true;
    showMessage("");
    el.status.textContent = "Sign-in needed";
    el.status.title = "";
    el.status.dataset.state = "loading";
    el.signin.hidden = false;
    el.signinKey.focus();
  }

  async function signIn(key) {
    el.signinError.hidden = true;
    try {
      await api("session", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ key }),
      });
    } catch (error) {
      el.signinError.textContent =
        error instanceof AuthError ? "That key is not right." : messageOf(error);
      el.signinError.hidden = false;
      el.signinKey.select();
      return;
    }
    el.signinKey.value = "";
    el.signin.hidden = true;
    el.intro.hidden = false;
    watchReadiness();
    begin();
  }

  async function signOut() {
    try {
      await api("session", { method: "DELETE" });
    } catch (error) {
      // Already signed out, or the service is gone: the sign-in form is right either way.
    }
    showSignIn();
  }

  // ---- people: the strip filters by a person (the `person` filter's control holds the id) --------

  function pickPerson(id) {
    const control = controlOf("person");
    if (!control) return;
    control.set(id ? [id] : []);
    if (state.mode) refilter();
    else if (id) searchText("photos");
    else syncUrl();
  }

  strip = peopleStrip({
    section: $("people"),
    list: $("people-list"),
    form: $("people-admin"),
    key: $("people-key"),
    api,
    picked: () => (controlOf("person") ? controlOf("person").values()[0] || null : null),
    pick: pickPerson,
    fail: (text) => showMessage(text, "error"),
    loaded: (people) => {
      state.people = people;
      showFilters();
    },
  });

  // ---- events -------------------------------------------------------------------------------

  el.form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.understand = true; // new words are read afresh
    searchText(el.query.value);
  });
  el.file.addEventListener("change", () => {
    const [file] = el.file.files;
    if (file) searchImage(file);
    el.file.value = "";
  });
  for (const chip of document.querySelectorAll("#examples .chip")) {
    chip.addEventListener("click", () => {
      state.understand = true;
      searchText(chip.dataset.query || "");
    });
  }
  el.clear.addEventListener("click", clearSearch);
  $("sort").addEventListener("change", refilter);
  $("min-score").addEventListener("change", refilter);
  el.likeClear.addEventListener("click", () => {
    setLike(null);
    searchText(el.query.value);
  });
  el.signinForm.addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(el.signinKey.value);
  });
  el.signout.addEventListener("click", signOut);
  el.viewerClose.addEventListener("click", () => el.viewer.close());
  el.viewer.addEventListener("click", (event) => {
    if (event.target === el.viewer) el.viewer.close(); // a click on the backdrop
  });
  el.viewer.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") step(-1);
    if (event.key === "ArrowRight") step(1);
  });
  el.describe.addEventListener("click", describeCurrent);
  el.similar.addEventListener("click", moreLikeCurrent);
  el.prev.addEventListener("click", () => step(-1));
  el.next.addEventListener("click", () => step(1));

  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    el.overlay.hidden = false;
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) el.overlay.hidden = true;
  });
  window.addEventListener("dragover", (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    el.overlay.hidden = true;
    const [file] = event.dataTransfer.files;
    if (file) searchImage(file);
  });
  window.addEventListener("paste", (event) => {
    const file = Array.from(event.clipboardData?.files || []).find((f) => f.type.startsWith("image/"));
    if (file) searchImage(file);
  });

  watchReadiness();
  begin();
})();
