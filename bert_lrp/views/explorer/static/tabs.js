// A tab list as WAI-ARIA describes it: role tab / tabpanel, aria-selected, one tab in the Tab order,
// Left / Right / Home / End move between the tabs (and open them).

/** Wire the tabs of `list`; `onOpen(name)` after a tab (its data-tab name) is opened. */
export function setupTabs(list, onOpen) {
  const tabs = [...list.querySelectorAll("[role=tab]")];

  function open(tab, focus = false) {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      other.classList.toggle("active", selected);
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
    onOpen(tab.dataset.tab);
  }

  for (const tab of tabs) {
    tab.addEventListener("click", () => open(tab));
    tab.addEventListener("keydown", (event) => {
      const i = tabs.indexOf(tab);
      const next = { ArrowRight: tabs[(i + 1) % tabs.length], ArrowLeft: tabs[(i - 1 + tabs.length) % tabs.length],
                     Home: tabs[0], End: tabs[tabs.length - 1] }[event.key];
      if (!next) return;
      event.preventDefault();
      open(next, true);
    });
  }
}
