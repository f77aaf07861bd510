import { screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { renderAt } from "../test/render";
import type { HSMTemplate } from "../types/marketing";
import { TemplatePreview } from "./TemplatePreview";

const followUp: HSMTemplate = {
  id: 1, name: "seguimiento_lead_v1", category: "MARKETING", language: "es", status: "APPROVED", quality_score: "GREEN",
  body_text: "Gracias por tu interés en {{2}}.", variables_count: 2, sent_count: 0, delivered_count: 0, read_count: 0,
  components: [
    { type: "HEADER", format: "TEXT", text: "¡Hola {{1}}!" },
    { type: "BODY", text: "Gracias por tu interés en {{2}}." },
    { type: "FOOTER", text: "Respondé STOP para no recibir más mensajes" },
  ],
};

describe("TemplatePreview", () => {
  it("shows every placeholder, the header's too, as the field the rule maps it to", () => {
    renderAt("/", <TemplatePreview template={followUp} variables={{ "1": "lead.first_name", "2": "lead.ad_headline" }} />);
    const bubble = screen.getByLabelText(/seguimiento_lead_v1/);
    expect(within(bubble).getByText("lead.first_name")).toBeInTheDocument();
    expect(within(bubble).getByText("lead.ad_headline")).toBeInTheDocument();
    expect(within(bubble).queryByText(/\{\{1\}\}/)).not.toBeInTheDocument();
    expect(within(bubble).getByText("Respondé STOP para no recibir más mensajes")).toBeInTheDocument();
  });
});
