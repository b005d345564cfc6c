/** A valid single-instance config, with `configuration` keys and top-level fields overridable. */
export function instance(configuration: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) {
  return {
    name: 'Docs',
    element: { key: 'concur' },
    provider: { baseUrl: 'http://127.0.0.1:1', auth: { type: 'none' } },
    configuration: {
      'event.notification.enabled': 'true',
      'event.vendor.type': 'polling',
      'event.notification.callback.url': 'http://127.0.0.1:2/hook',
      'event.poller.refresh_interval': '15',
      'event.poller.configuration': {
        reports: {
          url: "/hubs/expense/reports?where=modifiedDateAfter='${date:yyyy-MM-dd'T'HH:mm:ss.SSS}'",
          idField: 'ID',
          datesConfiguration: { updatedDateField: 'LastModifiedDate', updatedDateFormat: "yyyy-MM-dd'T'HH:mm:ss.SSS" },
        },
      },
      ...configuration,
    },
    ...extra,
  };
}
