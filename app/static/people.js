// imgsearch search page: the people strip (GET people): a face, a name and a count per person; a click
// filters the search by that person; with the admin key (IMGSEARCH_API_KEY) given, naming and merging.
// Every text reaches the DOM through textContent or properties.
"use strict";

// peopleStrip({section, list, form, key, api, picked, pick, fail, loaded}) → {load(), mark()}: `api(path,
// options)` is the page's fetch, `picked()` the id the person filter holds, `pick(id or null)` sets it and
// searches, `fail(text)` shows an error, `loaded(people)` gets each list loaded. Nothing shows for an
// index without people.
// eslint-disable-next-line no-unused-vars
const peopleStrip = ({ section, list, form, key, api, picked, pick, fail, loaded }) => {
  const made = (tag, properties) => Object.assign(document.createElement(tag), properties);
  const thumbnail = (id) => `people/${encodeURIComponent(id)}/thumbnail`;
  let people = [];
  let adminKey = ""; // kept in this page only, never stored

  async function change(path, body) {
    try {
      await api(path, {
        method: path.endsWith("/merge") ? "POST" : "PATCH",
        headers: { "content-type": "application/json", "X-API-Key": adminKey },
        body: JSON.stringify(body),
      });
    } catch (error) {
      fail(error.message || String(error));
      if (/API key/.test(error.message || "")) adminKey = ""; // a wrong key: ask again
    }
    load();
  }

  // The admin controls of one person: its name, and another person to merge it into.
  function editor(person) {
    const name = made("input", { type: "text", value: person.name || "", placeholder: "Name", maxLength: 100 });
    name.setAttribute("aria-label", `Name of ${person.name || "this person"}`);
    name.addEventListener("change", () => change(`people/${encodeURIComponent(person.id)}`, { name: name.value }));
    const into = made("select", {});
    into.setAttribute("aria-label", `Merge ${person.name || "this person"} into`);
    into.append(made("option", { value: "", textContent: "Merge into…" }));
    for (const other of people.filter((other) => other.id !== person.id)) {
      into.append(made("option", { value: other.id, textContent: other.name || `unnamed ${other.id}` }));
    }
    into.addEventListener("change", () => {
      if (into.value) change(`people/${encodeURIComponent(person.id)}/merge`, { into: into.value });
    });
    const span = made("span", { className: "person-edit" });
    span.append(name, into);
    return span;
  }

  function item(person) {
    const button = made("button", { type: "button", className: "person", title: person.name || "Unnamed" });
    button.dataset.person = person.id;
    button.setAttribute("aria-pressed", String(picked() === person.id));
    const face = made("img", { src: thumbnail(person.id), alt: "", loading: "lazy", className: "person-face" });
    const name = made("span", { className: "person-name", textContent: person.name || "Unnamed" });
    const count = made("span", { className: "person-count", textContent: `${person.images}` });
    count.title = `${person.images} image${person.images === 1 ? "" : "s"}`;
    button.append(face, name, count);
    button.addEventListener("click", () => {
      pick(picked() === person.id ? null : person.id);
      mark();
    });
    const li = made("li", { className: "person-item" });
    li.append(button);
    if (adminKey) li.append(editor(person));
    return li;
  }

  // Which person the search is filtered by, pressed.
  function mark() {
    for (const button of list.querySelectorAll("button.person")) {
      button.setAttribute("aria-pressed", String(button.dataset.person === picked()));
    }
  }

  async function load() {
    try {
      people = (await api("people")).people;
    } catch (error) {
      people = []; // no people to show (or not signed in yet): the strip stays hidden
    }
    list.replaceChildren(...people.map(item));
    section.hidden = people.length === 0;
    loaded(people);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    adminKey = key.value;
    key.value = "";
    load();
  });
  return { load, mark };
};
