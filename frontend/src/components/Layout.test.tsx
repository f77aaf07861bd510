import { screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { lead } from "../test/fixtures";
import { meFor, renderAt, stubApi } from "../test/render";
import { LeadView } from "../views/LeadView";
import { Layout } from "./Layout";

afterEach(() => vi.unstubAllGlobals());

describe("Layout", () => {
  it("shows the ceo every section, the admin and the API docs", () => {
    renderAt("/", <Layout />, { language: "en" });
    expect(screen.getByRole("link", { name: "Marketing Hub" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "HSM Automation" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Leads" })).toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Admin" })).toHaveAttribute("href", "/admin/");
    expect(screen.getByRole("link", { name: "API docs" })).toHaveAttribute("href", "/crm/docs/");
    expect(screen.getByRole("button", { name: "Log out" })).toBeInTheDocument();
  });

  it("shows marketing users the hub but not automation, and sellers only their leads", () => {
    const { unmount } = renderAt("/", <Layout />, { language: "en", me: meFor("marketing") });
    expect(screen.getByRole("link", { name: "Marketing Hub" })).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "HSM Automation" })).not.toBeInTheDocument();
    unmount();
    renderAt("/", <Layout />, { language: "en", me: meFor("seller") });
    expect(screen.queryByRole("link", { name: "Marketing Hub" })).not.toBeInTheDocument();
    expect(screen.getByRole("link", { name: "Leads" })).toBeInTheDocument();
    expect(screen.queryByRole("link", { name: "Admin" })).not.toBeInTheDocument();
  });

  it("switches between the user's accounts and remembers the choice", () => {
    const globex = { account_id: 2, name: "Globex", slug: "globex", role: "marketing" as const, currency: "EUR", timezone: "Europe/Madrid" };
    const me = meFor("ceo");
    renderAt("/", <Layout />, { language: "en", me: { ...me, memberships: [...me.memberships, globex], account: null } });
    const switcher = screen.getByLabelText("Account");
    expect(switcher).toHaveValue("acme");
    (switcher as HTMLSelectElement).value = "globex";
    switcher.dispatchEvent(new Event("change", { bubbles: true }));
    expect(localStorage.getItem("hub.account")).toBe("globex");
    expect(screen.getByText(/Marketing$/, { selector: "summary" })).toBeInTheDocument();
  });
});

describe("LeadView", () => {
  it("shows the ad that brought a Click-to-WhatsApp lead", async () => {
    stubApi({ "GET /crm/leads/9": { data: lead }, "GET /crm/marketing/automation-logs": { data: { results: [], total: 0, limit: 20, offset: 0 } } });
    renderAt("/leads/9", <LeadView />, { language: "en", route: "/leads/:id" });
    const card = await screen.findByTestId("adcontextcard-container");
    expect(card).toHaveTextContent("Click-to-WhatsApp");
    expect(card).toHaveTextContent("Promo noviembre");
    expect(card).toHaveTextContent("Escribinos por WhatsApp");
    expect(card).toHaveTextContent("120330000001");
    expect(await screen.findByText("No sends")).toBeInTheDocument();
  });

  it("shows a seller his lead without the automation log, and the API's 404 for another's", async () => {
    const calls = stubApi({ "GET /crm/leads/9": { data: { ...lead, lead_source: "manual" } } });
    const { unmount } = renderAt("/leads/9", <LeadView />, { language: "en", route: "/leads/:id", me: meFor("seller") });
    expect(await screen.findByText("This lead did not come from a Meta ad (source: Manual).")).toBeInTheDocument();
    expect(calls.some((c) => c.url.includes("automation-logs"))).toBe(false);
    unmount();
    renderAt("/leads/10", <LeadView />, { language: "en", route: "/leads/:id", me: meFor("seller") });
    expect(await screen.findByRole("alert")).toHaveTextContent("Not found");
  });
});
