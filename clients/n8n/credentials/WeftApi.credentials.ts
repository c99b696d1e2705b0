import type {
  IAuthenticateGeneric,
  ICredentialTestRequest,
  ICredentialType,
  INodeProperties,
} from "n8n-workflow";

/** A Weft API key and the base URL of the Weft deployment it belongs to. */
export class WeftApi implements ICredentialType {
  name = "weftApi";
  displayName = "Weft API";
  documentationUrl = "https://github.com/weft/weft/blob/main/docs/integrations.md#n8n";
  properties: INodeProperties[] = [
    {
      displayName: "Base URL",
      name: "baseUrl",
      type: "string",
      default: "",
      placeholder: "https://weft.example.com",
      required: true,
      description: "The Weft deployment, without /api/v1",
    },
    {
      displayName: "API Key",
      name: "apiKey",
      type: "string",
      typeOptions: { password: true },
      default: "",
      placeholder: "wft_live_...",
      required: true,
    },
  ];

  authenticate: IAuthenticateGeneric = {
    type: "generic",
    properties: { headers: { Authorization: "=Bearer {{$credentials.apiKey}}" } },
  };

  // "Test" in the credential dialog: GET /api/v1/me answers 200 only for a valid key.
  test: ICredentialTestRequest = {
    request: { baseURL: "={{$credentials.baseUrl.replace(/\\/+$/, '')}}", url: "/api/v1/me" },
  };
}
