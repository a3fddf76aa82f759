// imgsearch search page: the control of each filter the service takes, by the kind it declares
// (`control` in GET search/filters). Every text reaches the DOM through textContent or properties.
"use strict";

// filterControl(spec, changed) → {spec, element, values(), set(values), fill?(folders)}, or null for a
// kind this page does not know. `values()` are the parameter's values (repeated for a list), `set`
// takes them from a URL, and `changed` is called when the user changes the control.
// eslint-disable-next-line no-unused-vars
const filterControl = (() => {
  const made = (tag, properties) => Object.assign(document.createElement(tag), properties);
  const option = (value, text) => made("option", { value, textContent: text });

  // A control holding one value: a labelled input or select.
  function single(spec, input, changed) {
    input.id = spec.param;
    input.addEventListener("change", changed);
    const label = made("label", { className: "filter", title: spec.help });
    label.append(spec.label, " ", input);
    return {
      spec,
      element: label,
      values: () => (input.value.trim() ? [input.value.trim()] : []),
      set: (values) => {
        input.value = values[0] || "";
      },
    };
  }

  const CONTROLS = {
    // The collection's folders with their image counts (`fill`), or a folder typed into the URL.
    folder(spec, changed) {
      const select = made("select", {});
      select.append(option("", "All folders"));
      const control = single(spec, select, changed);
      control.set = (values) => {
        const wanted = values[0] || "";
        const known = [...select.options].some((o) => o.value === wanted);
        if (wanted && !known) select.append(option(wanted, wanted));
        select.value = wanted;
      };
      control.fill = (folders) => {
        const wanted = select.value;
        const named = ({ folder, count }) => option(folder, `${folder || "(top folder)"} (${count})`);
        select.replaceChildren(option("", "All folders"), ...folders.map(named));
        control.set([wanted]);
      };
      return control;
    },
    // The index's people by name (`people` with GET people's list: the strip gives it), or an id or
    // name from the URL until the list comes; its value is a person's id.
    person(spec, changed) {
      const select = made("select", {});
      select.append(option("", "Anyone"));
      const control = single(spec, select, changed);
      let people = [];
      const named = (person) => option(person.id, `${person.name || `Unnamed ${person.id}`} (${person.images})`);
      control.set = (values) => {
        const wanted = (values[0] || "").trim();
        const lower = wanted.toLowerCase();
        const same = (person) => person.id === wanted || (person.name || "").toLowerCase() === lower;
        const found = wanted ? people.find(same) : null;
        const value = found ? found.id : wanted;
        if (value && ![...select.options].some((o) => o.value === value)) select.append(option(value, value));
        select.value = value;
      };
      control.people = (list) => {
        const wanted = select.value;
        people = list;
        select.replaceChildren(option("", "Anyone"), ...list.map(named));
        control.set([wanted]);
      };
      return control;
    },
    date: (spec, changed) => single(spec, made("input", { type: "date" }), changed),
    text: (spec, changed) =>
      single(spec, made("input", { type: "search", maxLength: 200, placeholder: "any" }), changed),
    number: (spec, changed) =>
      single(spec, made("input", { type: "number", min: "0", step: "1", placeholder: "any" }), changed),
    yesno(spec, changed) {
      const select = made("select", {});
      select.append(option("", "any"), option("true", "yes"), option("false", "no"));
      return single(spec, select, changed);
    },
    // Several values (a repeatable parameter): a list of checkboxes that opens under its summary.
    choices(spec, changed) {
      const details = made("details", { className: "filter filter-choices", title: spec.help });
      const summary = made("summary", { id: spec.param });
      const list = made("div", { className: "choice-list" });
      details.append(summary, list);
      const boxes = [];
      const values = () => boxes.filter((box) => box.checked).map((box) => box.value);
      const show = () => {
        summary.textContent = `${spec.label}: ${values().join(", ").toUpperCase() || "any"}`;
      };
      const add = (value) => {
        const box = made("input", { type: "checkbox", value });
        box.addEventListener("change", () => {
          show();
          changed();
        });
        const label = made("label", {});
        label.append(box, value.toUpperCase());
        list.append(label);
        boxes.push(box);
        return box;
      };
      spec.choices.forEach(add);
      show();
      const set = (wanted) => {
        const lower = wanted.map((value) => value.toLowerCase());
        for (const box of boxes) box.checked = lower.includes(box.value);
        for (const value of lower) if (!boxes.some((box) => box.value === value)) add(value).checked = true;
        show();
      };
      return { spec, element: details, values, set };
    },
  };

  return (spec, changed) => (CONTROLS[spec.control] ? CONTROLS[spec.control](spec, changed) : null);
})();
