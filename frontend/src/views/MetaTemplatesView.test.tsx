import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { logRow, rule, template } from "../test/fixtures";
import { meFor, renderAt, stubApi } from "../test/render";
import { MetaTemplatesView } from "./MetaTemplatesView";

const engine = { sends: 40, delivered: 36, read: 20, failed: 2, delivery_rate: 90.0, read_rate: 55.6, leads_followed_up: 30, leads_uncontacted_24h: 4, engine: "operational" };
const logs = (results: ReturnType<typeof logRow>[], total = results.length, offset = 0) => ({ data: { results, total, limit: 20, offset } });
const api = (overrides = {}) => ({
  "GET /crm/marketing/automation/stats": { data: engine },
  "GET /crm/marketing/automation/rules": { data: [rule] },
  "GET /crm/marketing/hsm/templates": { data: [template] },
  "GET /crm/marketing/automation-logs": logs([logRow(1)]),
  ...overrides,
});

afterEach(() => vi.unstubAllGlobals());

describe("MetaTemplatesView", () => {
  it("shows the engine card with its state, rates and leads uncontacted after 24 h", async () => {
    stubApi(api());
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    const card = await screen.findByText("Operational");
    const engineCard = card.closest("section")!;
    expect(within(engineCard).getByText("90%")).toBeInTheDocument();
    expect(within(engineCard).getByText("55.6%")).toBeInTheDocument();
    expect(within(engineCard).getByText("30%")).toBeInTheDocument(); // share of new leads followed up
    expect(within(engineCard).getByText("Leads uncontacted after 24 h").nextSibling).toHaveTextContent("4");
  });

  it("previews a template as a WhatsApp bubble with each {{n}} shown as the field a rule maps it to", async () => {
    stubApi(api());
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    const bubble = await screen.findByLabelText("Preview of bienvenida_lead");
    await waitFor(() => expect(bubble).toHaveTextContent("Hola lead.first_name, gracias por escribirnos sobre account.name."));
    const card = bubble.closest("article")!;
    expect(within(card).getByText("Approved")).toBeInTheDocument();
    expect(within(card).getByText("MARKETING · es_AR")).toBeInTheDocument();
  });

  it("lists a rule with its trigger, steps and counters, and turns it off with a PATCH", async () => {
    const calls = stubApi(api({ "PATCH /crm/marketing/automation/rules/3": { data: { ...rule, is_active: false } } }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    const item = (await screen.findByRole("heading", { name: "Bienvenida a leads de Meta" })).closest("li")!;
    expect(within(item).getByText("Lead created · 1 step")).toBeInTheDocument();
    await waitFor(() => expect(within(item).getByText("Immediately: bienvenida_lead")).toBeInTheDocument());
    expect(within(item).getByText("10 sent · 9 delivered · 4 read · 1 failed")).toBeInTheDocument();
    expect(within(item).getByRole("link", { name: /Edit/ })).toHaveAttribute("href", "/admin/automation/automationrule/3/change/");

    fireEvent.click(within(item).getByRole("switch", { name: "Turn “Bienvenida a leads de Meta” on or off" }));

    await waitFor(() => expect(within(item).getByText("Inactive")).toBeInTheDocument());
    const patch = calls.find((c) => c.method === "PATCH")!;
    expect(patch.body).toEqual({ is_active: false });
    expect(patch.headers["X-CSRFToken"]).toBeDefined();
  });

  it("says after how many hours without an answer a no-reply rule fires", async () => {
    const noReply = { ...rule, id: 4, name: "Seguimiento 24 h", trigger_type: "no_reply" as const, no_reply_hours: 24 };
    stubApi(api({ "GET /crm/marketing/automation/rules": { data: [noReply] } }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    const item = (await screen.findByRole("heading", { name: "Seguimiento 24 h" })).closest("li")!;
    expect(within(item).getByText("No reply after 24 hours · 1 step")).toBeInTheDocument();
  });

  it("names every template status Meta sends in words, not as its code", async () => {
    stubApi(api({ "GET /crm/marketing/hsm/templates": { data: [{ ...template, status: "PENDING_DELETION" }] } }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "es" });
    const bubble = await screen.findByLabelText("Vista previa de bienvenida_lead");
    expect(within(bubble.closest("article")!).getByText("Eliminación pendiente")).toBeInTheDocument();
  });

  it("shows the send log, filters it by status and expands a failure's details", async () => {
    const failed = logRow(2, { status: "failed", error_code: 131026, error_details: "Message undeliverable." });
    const calls = stubApi(api({ "GET /crm/marketing/automation-logs?status=failed&limit=20&offset=0": logs([failed]) }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    const log = await screen.findByRole("heading", { name: "Send log" });
    const section = log.closest("section")!;
    expect(await within(section).findByText("Delivered")).toBeInTheDocument();

    fireEvent.change(within(section).getByLabelText("Status"), { target: { value: "failed" } });

    expect(await within(section).findByText("Error 131026")).toBeInTheDocument();
    expect(within(section).getByText("Message undeliverable.")).not.toBeVisible();
    fireEvent.click(within(section).getByText("Error 131026"));
    expect(within(section).getByText("Message undeliverable.")).toBeVisible();
    expect(calls.some((c) => c.url.includes("status=failed"))).toBe(true);
  });

  it("loads more sends on demand", async () => {
    stubApi(api({
      "GET /crm/marketing/automation-logs?limit=20&offset=0": logs([logRow(1)], 2, 0),
      "GET /crm/marketing/automation-logs?limit=20&offset=1": logs([logRow(7, { lead_name: "Lead siete" })], 2, 1),
    }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    fireEvent.click(await screen.findByRole("button", { name: "Load more" }));
    expect(await screen.findByText("Lead siete")).toBeInTheDocument();
    expect(screen.queryByRole("button", { name: "Load more" })).not.toBeInTheDocument();
  });

  it("says what to do when there are no rules, templates or sends", async () => {
    stubApi(api({
      "GET /crm/marketing/automation/rules": { data: [] },
      "GET /crm/marketing/hsm/templates": { data: [] },
      "GET /crm/marketing/automation-logs": logs([]),
    }));
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    expect(await screen.findByRole("link", { name: "Create a rule in the admin" })).toBeInTheDocument();
    expect(await screen.findByText(/Templates are synced from your WhatsApp Business account/)).toBeInTheDocument();
    expect(await screen.findByText("When an active rule sends a message, it shows up here.")).toBeInTheDocument();
  });

  it("shows a loading text and then an error when the endpoints fail", async () => {
    stubApi({});
    renderAt("/hsm", <MetaTemplatesView />, { language: "en" });
    expect(screen.getAllByText("Loading…").length).toBeGreaterThan(0);
    await waitFor(() => expect(screen.getAllByRole("alert")).toHaveLength(4));
  });

  it("is only for the ceo and admins", () => {
    const calls = stubApi(api());
    renderAt("/hsm", <MetaTemplatesView />, { language: "en", me: meFor("marketing") });
    expect(screen.getByText("HSM automation is managed by the CEO and admins.")).toBeInTheDocument();
    expect(calls).toEqual([]);
  });
});
